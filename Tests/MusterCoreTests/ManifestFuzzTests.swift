import Foundation
import MusterCore
import Testing

/// A seeded mutation fuzzer over the manifest and daemon-config decoders: every manifest in
/// Fixtures/manifest-corpus is mutated thousands of times (bytes flipped, ranges cut or doubled,
/// tokens that matter to TOML and to our keys spliced in, files truncated). No input may crash
/// the decoder; every rejection must be a readable message that names the file; every accepted
/// manifest must hold what validation promises. Deterministic: a failure names the seed and the
/// iteration, and replays.
@Suite struct ManifestFuzzTests {
    static let corpusFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/manifest-corpus")
    static let tokens = [
        "=", "\"", "'", "[", "]", "[[", "]]", "{", "}", ",", ".", "#", "\n", "\r\n", "\\", "\\u0000", "\u{0}", "\u{FEFF}", "é", "🦄",
        "true", "false", "nan", "inf", "-inf", "0x7fffffffffffffff", "9223372036854775808", "-1", "1e400", "1979-05-27T07:32:00Z",
        "\"\"\"", "'''", "[proxy]", "[health]", "[autoscale]", "[isolation]", "[restart]", "[resources]", "[logs]", "[export]", "[stop]",
        "listen = [\"127.0.0.1:0\"]", "max = 0", "min = 99999", "target = \"0\"", "instances = -5", "command = []",
        "interval = \"0s\"", "memory_max = \"1T\"", "{port}", "{index}", "{nope}", "name = \"Web!\"", String(repeating: "x", count: 300),
    ]

    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            return state &* 2_685_821_657_736_338_717
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
    }

    static func mutate(_ input: [UInt8], _ g: inout Generator) -> [UInt8] {
        var bytes = input
        for _ in 0..<(1 + g.below(4)) {
            let at = g.below(bytes.count + 1)
            switch g.below(6) {
            case 0 where !bytes.isEmpty:
                bytes[min(at, bytes.count - 1)] = UInt8(truncatingIfNeeded: g.next())
            case 1 where !bytes.isEmpty:
                let end = min(bytes.count, at + 1 + g.below(40))
                bytes.removeSubrange(min(at, end)..<end)
            case 2 where !bytes.isEmpty:
                let end = min(bytes.count, at + 1 + g.below(80))
                let start = min(at, end)
                bytes.insert(contentsOf: bytes[start..<end], at: g.below(bytes.count + 1))
            case 3:
                bytes.insert(contentsOf: Array(tokens[g.below(tokens.count)].utf8), at: at)
            case 4:
                bytes = Array(bytes.prefix(at))
            default:
                bytes.insert(contentsOf: Array("\n\(tokens[g.below(tokens.count)])\n".utf8), at: at)
            }
        }
        return bytes
    }

    static func corpus() throws -> [(String, [UInt8])] {
        let names = try FileManager.default.contentsOfDirectory(atPath: corpusFolder.path).filter { $0.hasSuffix(".toml") }.sorted()
        return try names.map { ($0, Array(try Data(contentsOf: corpusFolder.appendingPathComponent($0)))) }
    }

    /// What is wrong with the decoder's answer to `text`, or nil when it behaved.
    static func misbehaviour(_ text: String) -> String? {
        do {
            let spec = try ManifestDecoder.decode(text, fileName: "fuzz.toml")
            if !ServiceName.isValid(spec.name) { return "accepted an invalid name \(spec.name)" }
            if spec.command.isEmpty || spec.command[0].isEmpty { return "accepted an empty command" }
            if spec.instances < 0 { return "accepted instances \(spec.instances)" }
            if let scaler = spec.autoscale {
                if scaler.min > scaler.max || scaler.max < 1 { return "accepted bounds \(scaler.min)...\(scaler.max)" }
                if scaler.target <= 0 { return "accepted target \(scaler.target)" }
                if scaler.panicWindow > scaler.window { return "accepted a panic window longer than the window" }
                if !(scaler.min...scaler.max).contains(spec.instances) { return "accepted instances \(spec.instances) outside \(scaler.min)...\(scaler.max)" }
            }
            if let proxy = spec.proxy, proxy.listen.isEmpty { return "accepted a proxy without listen" }
            return nil
        } catch {
            if error.issues.isEmpty { return "threw ManifestErrors without an issue" }
            for issue in error.issues {
                let line = issue.description
                if !line.hasPrefix("fuzz.toml") { return "a message that does not name the file: \(line)" }
                if line.count < 15 { return "a message too short to help: \(line)" }
            }
            return nil
        }
    }

    @Test func mutatedManifestsNeverCrashAndEveryRejectionNamesTheFile() throws {
        let seeds = try Self.corpus()
        try #require(seeds.count >= 4)
        var generator = Generator(state: 0x5EED_0F_4D_15_7E57)
        var accepted = 0, rejected = 0
        var problems: [String] = []
        for iteration in 0..<4000 {
            let (name, seed) = seeds[iteration % seeds.count]
            let text = String(decoding: Self.mutate(seed, &generator), as: UTF8.self)
            if let problem = Self.misbehaviour(text) {
                problems.append("iteration \(iteration) from \(name): \(problem)\n--- input ---\n\(text.prefix(600))")
                if problems.count >= 5 { break }
            }
            if (try? ManifestDecoder.decode(text, fileName: "fuzz.toml")) != nil { accepted += 1 } else { rejected += 1 }
        }
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n\n"))")
        // Both sides were reached: mutations that still decode, and ones that do not.
        #expect(accepted > 50 && rejected > 1000, "accepted \(accepted), rejected \(rejected)")
    }

    @Test func mutatedDaemonConfigsNeverCrash() {
        let seed = Array("""
            [daemon]
            services_dir   = "services.d"
            control_socket = "/run/muster/muster.sock"
            state_dir      = "/var/lib/muster"
            log_dir        = "/var/log/muster"
            cgroup_root    = "auto"
            instance_ports = "20000-29999"
            control_group  = "muster"
            metrics_listen = "127.0.0.1:9464"
            metrics_interval = "1s"
            """.utf8)
        var generator = Generator(state: 0xC0FF_EE00_D15E_A5E5)
        var unnamed: [String] = []
        for _ in 0..<2000 {
            let text = String(decoding: Self.mutate(seed, &generator), as: UTF8.self)
            do { _ = try DaemonConfig.decode(text, path: "/etc/muster/musterd.toml") }
            catch {
                for issue in error.issues where !issue.description.hasPrefix("musterd.toml") { unnamed.append(issue.description) }
            }
        }
        #expect(unnamed.isEmpty, "\(unnamed.prefix(5))")
    }
}
