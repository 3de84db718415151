import MusterCore
import Testing

/// The charts' memory: a fixed ring, rates and p99 from counter deltas.
@Suite struct ServiceTimelineTests {
    static let bounds = [0.01, 0.1, 1.0]

    static func reading(requests: Int, latency: [Int], ready: Int = 1) -> ServiceTimeline.Reading {
        .init(requestsTotal: requests, latencyCounts: latency, ready: ready, desired: 2, cpuPercent: 12.5, memoryBytes: 4096)
    }

    @Test func ringKeepsTheLatestOldestFirst() {
        var ring = SampleRing<Int>(capacity: 3)
        #expect(ring.elements.isEmpty)
        #expect(ring.last == nil)
        for value in 1...2 { ring.append(value) }
        #expect(ring.elements == [1, 2])
        #expect(ring.last == 2)
        for value in 3...7 { ring.append(value) }
        #expect(ring.elements == [5, 6, 7])
        #expect(ring.count == 3)
        #expect(ring.last == 7)
    }

    @Test func upperBoundNamesTheBucketOfTheQuantile() {
        #expect(LatencyBuckets.upperBound(0.99, counts: [0, 0, 0, 0], bounds: Self.bounds) == nil)
        #expect(LatencyBuckets.upperBound(0.99, counts: [99, 1, 0, 0], bounds: Self.bounds) == 0.01)
        #expect(LatencyBuckets.upperBound(0.99, counts: [98, 2, 0, 0], bounds: Self.bounds) == 0.1)
        #expect(LatencyBuckets.upperBound(0.5, counts: [1, 0, 0, 1], bounds: Self.bounds) == 0.01)
        #expect(LatencyBuckets.upperBound(0.99, counts: [1, 0, 0, 1], bounds: Self.bounds) == .infinity)
    }

    @Test func deltaCountsOnlyWhatWasAdded() {
        #expect(LatencyBuckets.delta([5, 7, 1], since: [2, 7, 0]) == [3, 0, 1])
        // An instance that ended took its counts with it: nothing new, not negative.
        #expect(LatencyBuckets.delta([1, 0, 0], since: [4, 2, 0]) == [0, 0, 0])
        #expect(LatencyBuckets.delta([1, 2], since: []) == [1, 2])
    }

    @Test func firstReadingIsTheBaselineThenRatesComeFromDeltas() throws {
        var timeline = ServiceTimeline()
        timeline.record(Self.reading(requests: 1000, latency: [1000, 0, 0, 0]), at: 100, bounds: Self.bounds)
        timeline.record(Self.reading(requests: 1200, latency: [1000, 198, 2, 0]), at: 102, bounds: Self.bounds)
        let samples = timeline.samples.elements
        #expect(samples.count == 2)
        #expect(samples[0].rps == 0)
        #expect(samples[0].p99Seconds == nil)
        #expect(samples[1].rps == 100)
        // 200 new requests, 198 under 100 ms, 2 under 1 s: the 198th is in the 100 ms bucket.
        #expect(samples[1].p99Seconds == 0.1)
        #expect(samples[1].p50Seconds == 0.1)
        #expect(samples[1].ready == 1 && samples[1].desired == 2)
        #expect(samples[1].cpuPercent == 12.5 && samples[1].memoryBytes == 4096)
    }

    @Test func aQuietSecondHasNoP99AndAnInstanceThatEndedIsNoNegativeRate() {
        var timeline = ServiceTimeline()
        timeline.record(Self.reading(requests: 50, latency: [50, 0, 0, 0]), at: 1, bounds: Self.bounds)
        timeline.record(Self.reading(requests: 50, latency: [50, 0, 0, 0]), at: 2, bounds: Self.bounds)
        timeline.record(Self.reading(requests: 10, latency: [10, 0, 0, 0]), at: 3, bounds: Self.bounds)
        let samples = timeline.samples.elements
        #expect(samples[1].rps == 0 && samples[1].p99Seconds == nil)
        #expect(samples[2].rps == 0)
    }

    @Test func latencyPastTheLastBoundIsNotCharted() {
        var timeline = ServiceTimeline()
        timeline.record(Self.reading(requests: 0, latency: [0, 0, 0, 0]), at: 1, bounds: Self.bounds)
        timeline.record(Self.reading(requests: 1, latency: [0, 0, 0, 1]), at: 2, bounds: Self.bounds)
        #expect(timeline.samples.last?.p99Seconds == nil)
        #expect(timeline.samples.last?.rps == 1)
    }

    @Test func memoryIsBoundedAfterAnyRun() {
        var timeline = ServiceTimeline()
        for second in 0..<(ServiceTimeline.sampleCapacity + 250) {
            timeline.record(Self.reading(requests: second, latency: [second, 0, 0, 0]), at: Double(second), bounds: Self.bounds)
        }
        for index in 0..<(ServiceTimeline.markCapacity + 5) {
            timeline.mark(.init(time: Double(index), from: index, to: index + 1, reason: "test"))
        }
        #expect(timeline.samples.count == ServiceTimeline.sampleCapacity)
        #expect(timeline.samples.elements.first?.time == 250)
        #expect(timeline.marks.count == ServiceTimeline.markCapacity)
        #expect(timeline.marks.elements.first?.from == 5)
    }

    /// The ring packs samples: what comes back is the figure rounded (rates and CPU to
    /// thousandths, latencies to microseconds, memory to KiB), never a Float's long tail in JSON.
    @Test func aPackedSampleReadsBackRounded() {
        var timeline = ServiceTimeline()
        let bounds = [0.005, 0.1, 1.0]
        timeline.record(.init(requestsTotal: 0, latencyCounts: [0, 0, 0, 0], ready: 3, desired: 70_000, cpuPercent: 0, memoryBytes: 0),
                        at: 100, bounds: bounds)
        timeline.record(.init(requestsTotal: 100, latencyCounts: [100, 0, 0, 0], ready: 3, desired: 70_000, cpuPercent: 12.3456,
                              memoryBytes: 123_456_789), at: 103, bounds: bounds)
        let sample = timeline.samples.last
        #expect(sample?.rps == 33.333)
        #expect(sample?.p99Seconds == 0.005)
        #expect(sample?.cpuPercent == 12.346)
        #expect(sample?.memoryBytes == 123_456_512)
        #expect(sample?.ready == 3)
        #expect(sample?.desired == 65_535, "clamped, not wrapped")
        #expect(sample?.time == 103)
    }

    /// docs/operations.md states the bytes per service from these sizes.
    @Test func aSampleIsThirtyTwoBytesAndAMarkFortyPlusItsReason() {
        #expect(ServiceTimeline.bytesPerSample == 32)
        #expect(MemoryLayout<ServiceTimeline.ScalingMark>.stride == 40)
    }
}
