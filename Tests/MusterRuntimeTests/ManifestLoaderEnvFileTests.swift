import Foundation
import MusterCore
import MusterRuntime
import Testing

/// `env_file` as ManifestLoader reads it from disk: beside the manifest, in order, optional ones
/// skipped when missing, and every problem naming the manifest and the env file.
@Suite struct ManifestLoaderEnvFileTests {
    private static func folder(_ files: [String: String]) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("muster-envfile-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        for (name, text) in files { try text.write(toFile: path + "/" + name, atomically: false, encoding: .utf8) }
        return path
    }

    private static func problems(_ folder: String) -> [String] {
        do {
            _ = try ManifestLoader.loadServices(in: folder)
            return []
        } catch {
            return error.issues.map(\.description)
        }
    }

    @Test func laterFilesWinAndAMissingOptionalFileIsSkipped() throws {
        let dir = try Self.folder([
            "api.toml": "command = [\"/bin/true\"]\nenv_file = [\"base.env\", \"-absent.env\", \"override.env\"]\n",
            "base.env": "A=base\nB=base\n",
            "override.env": "export B=\"over ride\"\nC=3 # note\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spec = try #require(try ManifestLoader.loadServices(in: dir).first)
        #expect(spec.envFileEnvironment == ["A": "base", "B": "over ride", "C": "3"])
        #expect(spec.envFiles.map(\.path) == [dir + "/base.env", dir + "/absent.env", dir + "/override.env"])
    }

    @Test func aMissingFileOrABadLineNamesTheManifestAndTheEnvFile() throws {
        let dir = try Self.folder([
            "api.toml": "command = [\"/bin/true\"]\nenv_file = \"api.env\"\n",
            "web.toml": "command = [\"/bin/true\"]\nenv_file = [\"web.env\"]\n",
            "web.env": "OK=1\n\nFOO BAR\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(Self.problems(dir) == [
            "api.toml: env_file = \"api.env\": no such file \(dir)/api.env (create it, or write \"-api.env\" to skip it where it is missing)",
            #"web.toml: env_file: web.env:3: "FOO BAR" is not KEY=value"#,
        ])
    }

    @Test func anUnknownRequiredServiceIsAProblemOfTheSet() throws {
        let dir = try Self.folder([
            "api.toml": "command = [\"/bin/true\"]\nrequires = [\"dbb\"]\n",
            "db.toml": "command = [\"/bin/true\"]\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(Self.problems(dir) == [#"api.toml: requires: no service named "dbb" (did you mean "db"?)"#])
    }
}
