import Testing
@testable import MusterProxy

@Suite struct DescriptorReserveTests {
    @Test func keepsASixteenthAndAtLeast256() {
        #expect(DescriptorReserve.reserve(forLimit: 20_000) == 1_250)
        #expect(DescriptorReserve.reserve(forLimit: 524_288) == 32_768)
        #expect(DescriptorReserve.reserve(forLimit: 1_024) == 256)
        #expect(DescriptorReserve.ceiling(forLimit: 20_000) == 18_750)
        #expect(DescriptorReserve.ceiling(forLimit: 1_024) == 768)
    }

    @Test func aTinyLimitStillLeavesTheProxyHalf() {
        // 256 kept of 300 would leave the proxy 44: half is the floor.
        #expect(DescriptorReserve.ceiling(forLimit: 300) == 150)
        #expect(DescriptorReserve.ceiling(forLimit: 512) == 256)
    }
}
