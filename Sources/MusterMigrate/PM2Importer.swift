import MusterCore

/// Plain data as ecosystem files write it: JSON, plus what a `module.exports = {…}` file of plain
/// data uses (unquoted keys, single quotes, trailing commas, `//` and `/* */` comments).
public indirect enum JSValue: Sendable, Equatable {
    case object([(key: String, value: JSValue, line: Int)])
    case array([JSValue], line: Int)
    case string(String)
    case number(Double)
    case bool(Bool)
    case null

    public static func == (lhs: JSValue, rhs: JSValue) -> Bool {
        switch (lhs, rhs) {
        case (.object(let a), .object(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case (.array(let a, _), .array(let b, _)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.bool(let a), .bool(let b)): return a == b
        case (.null, .null): return true
        default: return false
        }
    }

    public subscript(key: String) -> JSValue? {
        guard case .object(let entries) = self else { return nil }
        return entries.last { $0.key == key }?.value
    }

    /// A scalar as text: strings as they are, numbers without a needless ".0".
    var text: String? {
        switch self {
        case .string(let s): return s
        case .number(let n): return n == n.rounded() && abs(n) < 1e15 ? String(Int(n)) : String(n)
        case .bool(let b): return String(b)
        default: return nil
        }
    }
}

public struct PlainDataParser {
    let chars: [Character]
    var index = 0
    var line = 1
    let file: String

    public static func parse(_ text: String, file: String) throws(MigrationError) -> JSValue {
        var body = text
        // `module.exports = {…};` (or `export default {…}`) of plain data: drop the prefix.
        var parser = PlainDataParser(chars: Array(body), file: file)
        parser.skipSpace()
        let rest = String(parser.chars[parser.index...])
        for prefix in ["module.exports", "export default"] where rest.hasPrefix(prefix) {
            var after = rest.dropFirst(prefix.count).drop { $0 == " " || $0 == "\t" }
            if prefix == "module.exports" {
                guard after.first == "=" else { break }
                after = after.dropFirst()
            }
            body = String(repeating: "\n", count: parser.line - 1) + String(after)
        }
        parser = PlainDataParser(chars: Array(body), file: file)
        parser.skipSpace()
        if parser.index < parser.chars.count, !"{[".contains(parser.chars[parser.index]) {
            throw parser.error("the file is not plain data (expected { or module.exports = {…})")
        }
        let value = try parser.value()
        parser.skipSpace()
        if parser.index < parser.chars.count, parser.chars[parser.index] == ";" { parser.index += 1; parser.skipSpace() }
        if parser.index < parser.chars.count { throw parser.error("unexpected text after the data") }
        return value
    }

    func error(_ message: String) -> MigrationError {
        MigrationError("\(file):\(line): \(message); an ecosystem file that computes values (require, process.env, functions) must be turned into JSON first: node -e 'console.log(JSON.stringify(require(\"./ecosystem.config.js\"), null, 2))' > ecosystem.json")
    }

    mutating func skipSpace() {
        while index < chars.count {
            let char = chars[index]
            if char == "\n" { line += 1; index += 1 }
            else if char.isWhitespace { index += 1 }
            else if char == "/", index + 1 < chars.count, chars[index + 1] == "/" {
                while index < chars.count, chars[index] != "\n" { index += 1 }
            } else if char == "/", index + 1 < chars.count, chars[index + 1] == "*" {
                index += 2
                while index + 1 < chars.count, !(chars[index] == "*" && chars[index + 1] == "/") {
                    if chars[index] == "\n" { line += 1 }
                    index += 1
                }
                index += 2
            } else { return }
        }
    }

    mutating func value() throws(MigrationError) -> JSValue {
        skipSpace()
        guard index < chars.count else { throw error("unexpected end of file") }
        let char = chars[index]
        switch char {
        case "{":
            index += 1
            var entries: [(key: String, value: JSValue, line: Int)] = []
            while true {
                skipSpace()
                guard index < chars.count else { throw error("unexpected end of file in an object") }
                if chars[index] == "}" { index += 1; return .object(entries) }
                let keyLine = line
                let key: String
                if chars[index] == "\"" || chars[index] == "'" { key = try string() }
                else {
                    var word = ""
                    while index < chars.count, chars[index].isLetter || chars[index].isNumber || chars[index] == "_" || chars[index] == "$" {
                        word.append(chars[index]); index += 1
                    }
                    guard !word.isEmpty else { throw error("expected a key, found \(chars[index])") }
                    key = word
                }
                skipSpace()
                guard index < chars.count, chars[index] == ":" else { throw error("expected : after \(key)") }
                index += 1
                entries.append((key, try value(), keyLine))
                skipSpace()
                if index < chars.count, chars[index] == "," { index += 1; continue }
                if index < chars.count, chars[index] == "}" { continue }
                throw error("expected , or } after the value of \(key)")
            }
        case "[":
            let startLine = line
            index += 1
            var items: [JSValue] = []
            while true {
                skipSpace()
                guard index < chars.count else { throw error("unexpected end of file in an array") }
                if chars[index] == "]" { index += 1; return .array(items, line: startLine) }
                items.append(try value())
                skipSpace()
                if index < chars.count, chars[index] == "," { index += 1; continue }
                if index < chars.count, chars[index] == "]" { continue }
                throw error("expected , or ] in an array")
            }
        case "\"", "'":
            return .string(try string())
        default:
            var word = ""
            while index < chars.count, chars[index].isLetter || chars[index].isNumber || ".+-_$".contains(chars[index]) {
                word.append(chars[index]); index += 1
            }
            switch word {
            case "true": return .bool(true)
            case "false": return .bool(false)
            case "null": return .null
            default:
                if let number = Double(word) { return .number(number) }
                throw error("\(word.isEmpty ? String(char) : word) is not plain data")
            }
        }
    }

    mutating func string() throws(MigrationError) -> String {
        let quote = chars[index]
        index += 1
        var out = ""
        while index < chars.count, chars[index] != quote {
            var char = chars[index]
            if char == "\n" { throw error("a string runs past the end of its line") }
            if char == "\\", index + 1 < chars.count {
                index += 1
                char = chars[index]
                switch char {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "b": out.append("\u{08}")
                case "f": out.append("\u{0C}")
                case "0": out.append("\u{00}")
                case "u":
                    guard index + 4 < chars.count, let code = UInt32(String(chars[(index + 1)...(index + 4)]), radix: 16),
                          let scalar = Unicode.Scalar(code) else { throw error("a bad \\u escape") }
                    out.unicodeScalars.append(scalar)
                    index += 4
                default: out.append(char)
                }
                index += 1
                continue
            }
            out.append(char)
            index += 1
        }
        guard index < chars.count else { throw error("a string without its closing quote") }
        index += 1
        return out
    }
}

/// `musterctl import pm2`: each of an ecosystem file's `apps` becomes one manifest.
public struct PM2Importer {
    public var cpuCount: Int
    public init(cpuCount: Int = HostFiles.cpuCount()) { self.cpuCount = cpuCount }

    public func importFile(_ path: String) -> ImportResult {
        var result = ImportResult()
        do throws(MigrationError) {
            let text = try HostFiles.read(path)
            result = importText(text, file: path, directory: PathText.directory(of: HostFiles.absolute(path, relativeTo: ".")))
        } catch {
            result.errors.append(error.message)
        }
        return result
    }

    static let interpreters: [String: String] = [
        "js": "node", "mjs": "node", "cjs": "node", "ts": "ts-node", "coffee": "coffee", "py": "python3", "sh": "bash",
        "rb": "ruby", "php": "php", "pl": "perl",
    ]

    public func importText(_ text: String, file: String, directory: String) -> ImportResult {
        var result = ImportResult()
        let root: JSValue
        do throws(MigrationError) { root = try PlainDataParser.parse(text, file: file) }
        catch { result.errors.append(error.message); return result }
        let apps: [JSValue]
        if case .array(let items, _) = root { apps = items }
        else if case .array(let items, _)? = root["apps"] { apps = items }
        else if case .object = root["apps"] { apps = [root["apps"]!] }
        else { result.errors.append("\(file): no apps: [...] in the ecosystem file"); return result }
        if case .object(let entries) = root {
            for entry in entries where entry.key != "apps" {
                result.notCarriedOver.append("\(file):\(entry.line) \(entry.key): \(entry.key == "deploy" ? "PM2's deploy (git pull and hooks) is outside a supervisor's job" : "no counterpart in a manifest")")
            }
        }
        var used: Set<String> = []
        for (position, app) in apps.enumerated() {
            do throws(MigrationError) {
                let manifest = try convert(app, position: position, file: file, directory: directory)
                if used.contains(manifest.name) { throw MigrationError("\(manifest.origin): service name \(manifest.name) is used by an earlier app; rename one") }
                used.insert(manifest.name)
                do { _ = try ManifestDecoder.decode(manifest.toml, fileName: manifest.fileName) }
                catch { throw MigrationError("\(manifest.origin): the generated manifest does not validate: \(error.description)") }
                result.manifests.append(manifest)
            } catch {
                result.errors.append(error.message)
            }
        }
        return result
    }

    static let handled: Set<String> = [
        "name", "script", "args", "interpreter", "interpreter_args", "node_args", "instances", "exec_mode", "cwd",
        "env", "autorestart", "max_restarts", "min_uptime", "restart_delay", "exp_backoff_restart_delay",
        "kill_timeout", "max_memory_restart", "user", "uid", "gid", "instance_var",
    ]

    func convert(_ app: JSValue, position: Int, file: String, directory: String) throws(MigrationError) -> ImportedManifest {
        guard case .object(let entries) = app else { throw MigrationError("\(file): apps[\(position)] is not an object") }
        let line = entries.first?.line ?? 1
        let origin = "\(file):\(line) apps[\(position)]"
        func at(_ key: String) -> String { "\(file):\(entries.last { $0.key == key }?.line ?? line)" }
        guard let script = app["script"]?.text, !script.isEmpty else { throw MigrationError("\(origin): no script") }
        let rawName = app["name"]?.text ?? String(script.split(separator: "/").last ?? "app").split(separator: ".").first.map(String.init) ?? "app"
        let name = NameMapping.serviceName(rawName)
        var draft = ManifestDraft(name: name)
        var notes: [String] = []
        draft.header = ["Imported by `musterctl import pm2` from \(origin)\(app["name"] != nil ? " (\(rawName))" : "")."]
        if name != rawName { draft.header.append("PM2 called it \"\(rawName)\"; service names use only a-z, 0-9 and '-'.") }

        var cwd = directory
        if let dir = app["cwd"]?.text {
            cwd = HostFiles.absolute(dir, relativeTo: directory)
            draft.directory = cwd
        }
        // The command: interpreter, its arguments, the script (as a path), then args.
        let ext = script.split(separator: ".").count > 1 ? String(script.split(separator: ".").last!) : ""
        var interpreter = app["interpreter"]?.text ?? Self.interpreters[ext] ?? "none"
        if interpreter == "none" || interpreter.isEmpty { interpreter = "" }
        let scriptIsPath = script.contains("/") || !interpreter.isEmpty || !ext.isEmpty
        let scriptPath = scriptIsPath ? HostFiles.absolute(script, relativeTo: cwd) : script
        var command: [String] = []
        if !interpreter.isEmpty {
            command.append(interpreter)
            for key in ["interpreter_args", "node_args"] { command += try arguments(app[key], key: key, at: at(key)) }
        }
        command.append(scriptPath)
        command += try arguments(app["args"], key: "args", at: at("args"))
        draft.command = command

        var instances = 1
        if let value = app["instances"] {
            if value.text == "max" || value.text == "0" { instances = cpuCount; draft.instancesComment = "PM2's instances: \(value.text!) is one per CPU: \(cpuCount) on the host that ran the import." }
            else if value.text == "-1" { instances = max(1, cpuCount - 1); draft.instancesComment = "PM2's instances: -1 is one per CPU but one: \(instances) on the host that ran the import." }
            else if let count = Int(value.text ?? ""), count >= 1, count <= 10_000 { instances = count }
            else { throw MigrationError("\(at("instances")): instances: \(value.text ?? "?") is not a count, max or -1") }
        }
        if instances != 1 { draft.instances = instances }
        let mode = app["exec_mode"]?.text ?? "fork"
        if mode.contains("cluster") {
            draft.trailingComments.append("exec_mode: cluster in PM2 shared one listening port among the instances (Node's cluster module).\nMuster gives each instance its own port instead: {port} in command or $PORT. Balancing one port\nacross them is the [proxy] table, which this musterd does not read yet; when it does, add\n[proxy] listen = \"<the port your clients use>\" here.")
            notes.append("exec_mode=cluster (\(at("exec_mode"))): needs a [proxy] with a port you choose, not supported yet; each instance gets its own $PORT meanwhile")
        }

        draft.inheritEnvironment = true
        draft.inheritEnvironmentComment = "PM2's apps start with the environment pm2 was started in, plus env;\ninherit_environment = true keeps that (false gives a clean one)."
        let instanceVar = app["instance_var"]?.text ?? "NODE_APP_INSTANCE"
        draft.environment.append((instanceVar, "{index}"))
        if case .object(let env)? = app["env"] {
            for entry in env {
                guard let value = entry.value.text else {
                    notes.append("env.\(entry.key) (\(file):\(entry.line)): not a string, number or boolean")
                    continue
                }
                if let index = draft.environment.firstIndex(where: { $0.0 == entry.key }) { draft.environment[index].1 = value }
                else { draft.environment.append((entry.key, value)) }
            }
        }

        if app["autorestart"] == .bool(false) { draft.restartPolicy = "never" } else { draft.restartPolicy = "always" }
        if let value = app["max_restarts"]?.text {
            guard let count = Int(value), count >= 0 else { throw MigrationError("\(at("max_restarts")): max_restarts: \(value) is not a count") }
            draft.maxFailedStarts = max(1, count)
        } else {
            draft.maxFailedStarts = 16
        }
        draft.startSeconds = try milliseconds(app["min_uptime"], key: "min_uptime", at: at("min_uptime")).map { $0 / 1000 } ?? 1
        if let delay = try milliseconds(app["exp_backoff_restart_delay"], key: "exp_backoff_restart_delay", at: at("exp_backoff_restart_delay")) {
            draft.backoffMin = DurationText.format(.milliseconds(Int64(delay)))
            draft.backoffMax = delay > 15_000 ? DurationText.format(.milliseconds(Int64(delay))) : "15s"
            draft.backoffComment = "exp_backoff_restart_delay: PM2 doubles the delay up to 15s, as here."
        } else if let delay = try milliseconds(app["restart_delay"], key: "restart_delay", at: at("restart_delay")) {
            draft.backoffMin = DurationText.format(.milliseconds(Int64(delay)))
            draft.backoffMax = DurationText.format(.milliseconds(Int64(max(delay, 30_000))))
            draft.backoffComment = "restart_delay: PM2 waits the same delay every time; Muster restarts a first exit at once and then doubles from backoff_min."
            notes.append("restart_delay (\(at("restart_delay"))): a fixed delay has no exact counterpart; backoff_min starts there and doubles")
        }
        // PM2 stops with SIGINT, then SIGKILL after kill_timeout (1600ms by default).
        draft.stopSignal = "INT"
        draft.stopTimeout = DurationText.format(.milliseconds(Int64(try milliseconds(app["kill_timeout"], key: "kill_timeout", at: at("kill_timeout")) ?? 1600)))
        if let memory = app["max_memory_restart"]?.text {
            guard let bytes = ByteSize.parse(memory), bytes >= 1 << 20 else {
                throw MigrationError("\(at("max_memory_restart")): max_memory_restart: \(memory) is not a size of 1M or more")
            }
            draft.memoryMax = ByteSize.format(bytes)
            draft.memoryComment = "max_memory_restart: PM2 restarted the app past this; here the kernel OOM-kills it and the restart policy restarts it."
        }
        if let user = app["user"]?.text ?? app["uid"]?.text { draft.user = user }
        if let group = app["gid"]?.text { draft.group = group }

        for entry in entries where !Self.handled.contains(entry.key) {
            let why: String
            switch entry.key {
            case let key where key.hasPrefix("env_"): why = "PM2 applies it with --env \(key.dropFirst(4)); copy what you need into [environment]"
            case "watch", "ignore_watch", "watch_options": why = "musterd does not restart on file changes; run `musterctl restart \(name)` after a deploy"
            case "cron_restart": why = "musterd has no scheduled restarts; a systemd timer running `musterctl restart \(name)` does it"
            case "out_file", "error_file", "log_file", "merge_logs", "combine_logs", "log_date_format", "log_type":
                why = "musterd writes both streams, stamped, to <log_dir>/\(name)/<index>.log (musterctl logs \(name))"
            case "wait_ready", "listen_timeout": why = "musterd has no ready message yet; start_seconds decides when an instance counts as started"
            default: why = "no counterpart in a manifest"
            }
            notes.append("\(entry.key) (\(file):\(entry.line)): \(why)")
        }
        draft.notCarriedOver = notes
        return ImportedManifest(name: name, toml: TOMLWriter.write(draft), origin: origin, notCarriedOver: notes)
    }

    func arguments(_ value: JSValue?, key: String, at place: String) throws(MigrationError) -> [String] {
        guard let value else { return [] }
        if case .array(let items, _) = value {
            return try items.map { (item: JSValue) throws(MigrationError) -> String in
                guard let text = item.text else { throw MigrationError("\(place): \(key) holds something that is not a string") }
                return text
            }
        }
        guard let text = value.text else { throw MigrationError("\(place): \(key) is not a string or a list of strings") }
        return try Shlex.split(text)
    }

    /// PM2 times: a number of milliseconds, or a string such as "2s", "1m" or "500ms".
    func milliseconds(_ value: JSValue?, key: String, at place: String) throws(MigrationError) -> Double? {
        guard let value else { return nil }
        if case .number(let ms) = value, ms >= 0 { return ms }
        if case .string(let text) = value {
            if let ms = Double(text), ms >= 0 { return ms }
            if let duration = DurationText.parse(text) { return duration.seconds * 1000 }
        }
        throw MigrationError("\(place): \(key): \(value.text ?? "?") is not a time (milliseconds, or \"2s\")")
    }
}
