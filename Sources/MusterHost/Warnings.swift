import Glibc
import MusterCore

/// Things that are allowed but worth saying out loud before they happen.
public enum Warnings {
    public static func forSpecs(_ specs: [ServiceSpec]) -> [String] {
        var warnings: [String] = []
        if geteuid() == 0 {
            let asRoot = specs.filter { $0.user == nil }.map(\.name)
            if !asRoot.isEmpty {
                warnings.append("\(asRoot.joined(separator: ", ")) will run as root (no user = \"…\" in the manifest)")
            }
        }
        warnings += DependencyGraph.validate(specs).warnings
        return warnings
    }
}
