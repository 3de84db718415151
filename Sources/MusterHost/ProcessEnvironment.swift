import Glibc

/// This process's environment as a dictionary (Foundation-free): the daemon's, for services
/// with `inherit_environment = true`; musterctl's, for `%(ENV_X)s` when importing.
public enum ProcessEnvironment {
    public static func current() -> [String: String] {
        var result: [String: String] = [:]
        var cursor = environ
        while let entry = cursor.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            cursor += 1
        }
        return result
    }
}
