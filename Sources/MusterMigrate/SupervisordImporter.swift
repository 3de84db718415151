import MusterCore

/// `musterctl import supervisord`: each `[program:x]` of a supervisord.conf (and the files its
/// `[include] files=` globs name) becomes one manifest.
public struct SupervisordImporter {
    /// supervisord's own environment, for `%(ENV_X)s`.
    public var environment: [String: String]
    /// For `%(host_node_name)s`.
    public var hostName: String

    public init(environment: [String: String], hostName: String = HostFiles.hostName()) {
        self.environment = environment
        self.hostName = hostName
    }

    /// Reads the main config and its includes from disk.
    public func importFiles(_ paths: [String]) -> ImportResult {
        var result = ImportResult()
        var sections: [INISection] = []
        for path in paths {
            do throws(MigrationError) {
                sections += try readWithIncludes(path, seen: [], into: &result)
            } catch {
                result.errors.append(error.message)
            }
        }
        convert(sections, into: &result)
        return result
    }

    func readWithIncludes(_ path: String, seen: Set<String>, into result: inout ImportResult) throws(MigrationError) -> [INISection] {
        let absolute = HostFiles.absolute(path, relativeTo: ".")
        guard !seen.contains(absolute) else { throw MigrationError("\(path) includes itself") }
        let text = try HostFiles.read(path)
        let here = PathText.directory(of: absolute)
        var sections = try INIFile.parse(text, file: path, here: here)
        var included: [INISection] = []
        for section in sections where section.name == "include" {
            guard let files = section.value("files") else {
                result.errors.append("\(section.origin): [include] without files=")
                continue
            }
            let expanded: String
            do throws(MigrationError) { expanded = try Expansion.expandPlain(files, names: envNames(), where: "\(section.origin) [include] files") }
            catch { result.errors.append(error.message); continue }
            for pattern in expanded.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }) {
                let full = pattern.hasPrefix("/") ? String(pattern) : here + "/" + pattern
                let matches = HostFiles.glob(full)
                if matches.isEmpty {
                    result.notCarriedOver.append("\(section.origin): [include] pattern \(pattern) matched no file")
                }
                for match in matches {
                    included += try readWithIncludes(match, seen: seen.union([absolute]), into: &result)
                }
            }
        }
        sections.removeAll { $0.name == "include" }
        return sections + included
    }

    func envNames() -> [String: String] {
        var names: [String: String] = ["host_node_name": hostName]
        for (key, value) in environment { names["ENV_" + key] = value }
        return names
    }

    func convert(_ sections: [INISection], into result: inout ImportResult) {
        // Sections with the same name merge, later keys winning (RawConfigParser with strict=False).
        var merged: [INISection] = []
        for section in sections {
            if let index = merged.firstIndex(where: { $0.name == section.name }) { merged[index].entries += section.entries }
            else { merged.append(section) }
        }
        var groupOf: [String: String] = [:]
        var globalEnvironment: [(String, String)] = []
        for section in merged {
            if section.name.hasPrefix("group:") {
                let group = String(section.name.dropFirst(6))
                let programs = (section.value("programs") ?? "").split(separator: ",").map { $0.trimmingWhitespace() }
                for program in programs { groupOf[program] = group }
                result.notCarriedOver.append("\(section.origin) [\(section.name)] (programs \(programs.joined(separator: ", "))): Muster has no process groups; each program became its own service, and each is started, stopped and scaled by its own name")
            } else if section.name.hasPrefix("eventlistener:") {
                result.notCarriedOver.append("\(section.origin) [\(section.name)]: an event listener speaks supervisord's event protocol on stdin/stdout, which musterd does not offer; follow musterd's events with `musterctl events` or GET /v1/events instead")
            } else if section.name.hasPrefix("fcgi-program:") {
                result.notCarriedOver.append("\(section.origin) [\(section.name)]: musterd does not open a FastCGI socket for its processes; run the program with its own listener as a [program:x]")
            } else if section.name == "supervisord" {
                if let text = section.value("environment") {
                    do throws(MigrationError) {
                        let expanded = try Expansion.expandPlain(text, names: envNames(), where: "\(section.origin) [supervisord] environment")
                        globalEnvironment = try Shlex.keyValuePairs(expanded)
                    } catch { result.errors.append(error.message) }
                }
                let others = section.entries.map(\.key).filter { $0 != "environment" }
                if !others.isEmpty {
                    result.notCarriedOver.append("\(section.origin) [supervisord] \(Set(others).sorted().joined(separator: ", ")): daemon settings; musterd's own are in musterd.toml (docs/manifest.md)")
                }
            } else if !section.name.hasPrefix("program:") {
                result.notCarriedOver.append("\(section.origin) [\(section.name)]: supervisord's own server or client settings; musterd's control socket is set in musterd.toml")
            }
        }
        var used: Set<String> = []
        for section in merged where section.name.hasPrefix("program:") {
            let program = String(section.name.dropFirst(8))
            do throws(MigrationError) {
                var manifest = try convertProgram(section, program: program, group: groupOf[program] ?? program, globalEnvironment: globalEnvironment)
                if used.contains(manifest.name) {
                    throw MigrationError("\(section.origin) [program:\(program)]: its service name \(manifest.name) is already taken by another program; rename one of them")
                }
                used.insert(manifest.name)
                do { _ = try ManifestDecoder.decode(manifest.toml, fileName: manifest.fileName) }
                catch { throw MigrationError("\(section.origin) [program:\(program)]: the generated manifest does not validate: \(error.description)") }
                manifest.origin = "\(section.origin) [program:\(program)]"
                result.manifests.append(manifest)
            } catch {
                result.errors.append(error.message)
            }
        }
    }

    static let knownKeys: Set<String> = [
        "command", "process_name", "numprocs", "numprocs_start", "priority", "autostart", "startsecs",
        "startretries", "autorestart", "exitcodes", "stopsignal", "stopwaitsecs", "stopasgroup",
        "killasgroup", "user", "redirect_stderr", "stdout_logfile", "stdout_logfile_maxbytes",
        "stdout_logfile_backups", "stderr_logfile", "stderr_logfile_maxbytes", "stderr_logfile_backups",
        "environment", "directory",
    ]

    func convertProgram(_ section: INISection, program: String, group: String, globalEnvironment: [(String, String)]) throws(MigrationError) -> ImportedManifest {
        let at = { (key: String) in "\(section.file):\(section.line(of: key))" }
        let name = NameMapping.serviceName(program)
        var draft = ManifestDraft(name: name)
        var notes: [String] = []
        func note(_ key: String, _ why: String) { notes.append("\(key) (\(at(key))): \(why)") }

        let numprocs = try integer(section, "numprocs", default: 1, minimum: 0)
        let numprocsStart = try integer(section, "numprocs_start", default: 0, minimum: 0)
        var names = envNames()
        names["program_name"] = program
        names["group_name"] = group
        names["numprocs"] = String(numprocs)
        let expansion = Expansion(names: names, numprocs: numprocs, numprocsStart: numprocsStart)

        draft.header = [
            "Imported by `musterctl import supervisord` from \(section.origin) [program:\(program)].",
        ]
        if name != program {
            draft.header.append("supervisord called it \"\(program)\"; service names use only a-z, 0-9 and '-'.")
        }
        guard let rawCommand = section.value("command") else {
            throw MigrationError("\(section.origin) [program:\(program)]: no command= (supervisord refuses such a program too)")
        }
        var expanded = try expansion.expand(rawCommand, where: "\(at("command")) command")
        draft.command = try Shlex.split(expanded.text)
        guard !draft.command.isEmpty else { throw MigrationError("\(at("command")) [program:\(program)]: command is empty") }
        var placeholderNotes = expanded.notes

        if let directory = section.value("directory") {
            expanded = try expansion.expand(directory, where: "\(at("directory")) directory")
            placeholderNotes += expanded.notes
            if expanded.text.hasPrefix("/") || expanded.text.hasPrefix("{") { draft.directory = expanded.text }
            else { note("directory", "\(expanded.text) is relative; a manifest's directory must be absolute") }
        }
        if let user = section.value("user") { draft.user = user }

        if numprocs != 1 { draft.instances = numprocs }
        if let processName = section.value("process_name"), processName != "%(program_name)s",
           processName != "%(program_name)s_%(process_num)d", processName != "%(program_name)s_%(process_num)02d" {
            note("process_name", "instances are always named \(name):INDEX in Muster (was \(processName))")
        }

        draft.inheritEnvironment = true
        draft.inheritEnvironmentComment = "supervisord's programs start with supervisord's own environment plus environment=;\ninherit_environment = true keeps that (false gives a clean one)."
        var environment = globalEnvironment
        if let text = section.value("environment") {
            expanded = try expansion.expand(text, where: "\(at("environment")) environment")
            placeholderNotes += expanded.notes
            do throws(MigrationError) { environment += try Shlex.keyValuePairs(expanded.text) }
            catch { throw MigrationError("\(at("environment")) [program:\(program)]: \(error.message)") }
        }
        var seenKeys: [String: Int] = [:]
        for (key, value) in environment {
            if let index = seenKeys[key] { draft.environment[index].1 = value }
            else { seenKeys[key] = draft.environment.count; draft.environment.append((key, value)) }
        }

        let autorestart = (section.value("autorestart") ?? "unexpected").lowercased()
        switch autorestart {
        case "unexpected": draft.restartPolicy = "on-failure"
        default:
            guard let value = boolean(autorestart) else {
                throw MigrationError("\(at("autorestart")) [program:\(program)]: autorestart=\(autorestart) is not true, false or unexpected")
            }
            draft.restartPolicy = value ? "always" : "never"
        }
        if let codes = section.value("exitcodes") {
            var list: [Int] = []
            for part in codes.split(separator: ",") {
                guard let code = Int(part.trimmingWhitespace()), (0...255).contains(code) else {
                    throw MigrationError("\(at("exitcodes")) [program:\(program)]: exitcodes=\(codes) is not a list of exit codes")
                }
                list.append(code)
            }
            if !list.isEmpty && list != [0] { draft.successExitCodes = list }
        }
        if section.value("startsecs") != nil { draft.startSeconds = Double(try integer(section, "startsecs", default: 1, minimum: 0)) }
        // supervisord gives up when the failed starts exceed startretries (default 3): 4 in a row.
        draft.maxFailedStarts = try integer(section, "startretries", default: 3, minimum: 0) + 1
        draft.backoffComment = "supervisord waits 1s, 2s, 3s, … between failed starts; Muster doubles from backoff_min."
        draft.backoffMin = "1s"

        if let signal = section.value("stopsignal") {
            guard let number = SignalName.number(signal) else {
                throw MigrationError("\(at("stopsignal")) [program:\(program)]: stopsignal=\(signal) is not a signal")
            }
            draft.stopSignal = SignalName.name(number).hasPrefix("SIG") ? String(SignalName.name(number).dropFirst(3)) : String(number)
        }
        if section.value("stopwaitsecs") != nil { draft.stopTimeout = "\(try integer(section, "stopwaitsecs", default: 10, minimum: 0))s" }
        if let asGroup = section.value("stopasgroup"), boolean(asGroup) == true {
            note("stopasgroup", "musterd sends the stop signal to the main process only (the whole cgroup is killed after [stop] timeout)")
        }
        if let maxBytes = section.value("stdout_logfile_maxbytes") {
            if let bytes = ByteSize.parse(maxBytes), bytes >= 1024 { draft.logMaxBytes = ByteSize.format(bytes) }
            else { note("stdout_logfile_maxbytes", "\(maxBytes): musterd always rotates, at 1K or more") }
        }
        if section.value("stdout_logfile_backups") != nil {
            draft.logBackups = min(1000, try integer(section, "stdout_logfile_backups", default: 10, minimum: 0))
        }
        for key in ["stdout_logfile", "stderr_logfile"] where section.value(key) != nil {
            note(key, "musterd writes stdout and stderr to <log_dir>/\(name)/<index>.log (musterctl logs \(name))")
        }
        for key in ["redirect_stderr", "stderr_logfile_maxbytes", "stderr_logfile_backups"] where section.value(key) != nil {
            note(key, "musterd keeps stdout and stderr in one log, each line marked with its stream")
        }
        if let priority = section.value("priority") {
            note("priority", "musterd starts services in no set order (priority was \(priority))")
        }
        if let killAsGroup = section.value("killasgroup"), boolean(killAsGroup) == false {
            note("killasgroup", "musterd always kills the whole cgroup after [stop] timeout")
        }
        if let autostart = section.value("autostart"), boolean(autostart) == false {
            draft.trailingComments.append("autostart=false in supervisord: musterd has no manifest key for a stopped intent yet;\nrun `musterctl stop \(name)` after the first start (the stop is kept across restarts).")
            notes.append("autostart=false (\(at("autostart"))): no stopped-intent key yet; run `musterctl stop \(name)` once")
        }
        for entry in section.entries where !Self.knownKeys.contains(entry.key) {
            let why = entry.key == "umask" ? "musterd starts processes with its own umask"
                : entry.key.hasPrefix("stdout_") || entry.key.hasPrefix("stderr_") ? "musterd's logs have no such setting"
                : "no counterpart in a manifest"
            notes.append("\(entry.key)=\(entry.value) (\(section.file):\(entry.line)): \(why)")
        }
        for extra in placeholderNotes { draft.trailingComments.append(extra) }
        draft.notCarriedOver = notes
        return ImportedManifest(name: name, toml: TOMLWriter.write(draft), origin: section.origin, notCarriedOver: notes, notes: placeholderNotes)
    }

    func integer(_ section: INISection, _ key: String, default fallback: Int, minimum: Int) throws(MigrationError) -> Int {
        guard let text = section.value(key) else { return fallback }
        guard let value = Int(text.trimmingWhitespace()), value >= minimum else {
            throw MigrationError("\(section.file):\(section.line(of: key)): \(key)=\(text) is not a whole number of at least \(minimum)")
        }
        return value
    }

    func boolean(_ text: String) -> Bool? {
        switch text.trimmingWhitespace().lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: return nil
        }
    }
}

/// supervisord's `%(name)s` expansion (Python `%` formatting against a dict), with
/// `%(process_num)d` becoming Muster's `{index}` where Muster can say the same thing.
struct Expansion {
    var names: [String: String]
    var numprocs: Int
    var numprocsStart: Int

    struct Result { var text: String; var notes: [String] }

    static func expandPlain(_ text: String, names: [String: String], where place: String) throws(MigrationError) -> String {
        try Expansion(names: names, numprocs: 1, numprocsStart: 0).expand(text, where: place).text
    }

    func expand(_ text: String, where place: String) throws(MigrationError) -> Result {
        var out = ""
        var notes: [String] = []
        let chars = Array(text)
        var index = 0
        while index < chars.count {
            let char = chars[index]
            guard char == "%" else { out.append(char); index += 1; continue }
            guard index + 1 < chars.count else { throw MigrationError("\(place): a lone % at the end (write %% for a literal %)") }
            if chars[index + 1] == "%" { out.append("%"); index += 2; continue }
            guard chars[index + 1] == "(" , let close = chars[(index + 2)...].firstIndex(of: ")") else {
                throw MigrationError("\(place): % not followed by (name) (write %% for a literal %)")
            }
            let name = String(chars[(index + 2)..<close])
            var cursor = close + 1
            var flags = ""
            while cursor < chars.count, "-+ #0".contains(chars[cursor]) { flags.append(chars[cursor]); cursor += 1 }
            var widthText = ""
            while cursor < chars.count, chars[cursor].isNumber { widthText.append(chars[cursor]); cursor += 1 }
            if cursor < chars.count, chars[cursor] == "." {
                cursor += 1
                while cursor < chars.count, chars[cursor].isNumber { cursor += 1 }
            }
            guard cursor < chars.count, "sdirf".contains(chars[cursor]) else {
                throw MigrationError("\(place): %(\(name)) needs a conversion such as s or d")
            }
            let spec = String(chars[index..<(cursor + 1)])
            let width = Int(widthText) ?? 0
            index = cursor + 1
            if name == "process_num" {
                out += indexText(spec: spec, flags: flags, width: width, notes: &notes, place: place)
                continue
            }
            guard let value = names[name] else {
                if name.hasPrefix("ENV_") {
                    throw MigrationError("\(place): \(spec): \(name.dropFirst(4)) is not set in this environment (supervisord refuses this too; set it and import again)")
                }
                throw MigrationError("\(place): \(spec): supervisord knows no %(\(name)) here")
            }
            let padding = max(0, width - value.count)
            if flags.contains("-") { out += value + String(repeating: " ", count: padding) }
            else { out += String(repeating: flags.contains("0") && Int(value) != nil ? "0" : " ", count: padding) + value }
            if name.hasPrefix("ENV_") { notes.append("\(spec) in \(place) was expanded now, from musterctl's environment: \(value)") }
            if name == "host_node_name" { notes.append("\(spec) in \(place) was expanded now, to this host's name \(value)") }
        }
        return Result(text: out, notes: notes)
    }

    private func indexText(spec: String, flags: String, width: Int, notes: inout [String], place: String) -> String {
        if numprocsStart != 0 {
            notes.append("\(spec) in \(place): numprocs_start=\(numprocsStart) numbered processes from \(numprocsStart); Muster's {index} counts from 0")
        }
        guard width > 1 else { return "{index}" }
        let pad = flags.contains("0") && !flags.contains("-") ? "0" : " "
        let lastIndex = numprocsStart + max(numprocs, 1) - 1
        if String(lastIndex).count == 1 {
            // Every index has one digit, so a fixed prefix pads them all the same way.
            let fill = String(repeating: pad, count: width - 1)
            notes.append("\(spec) in \(place) became \(flags.contains("-") ? "{index}" + fill : fill + "{index}"): the same while there are at most 10 instances; Muster's {index} has no width, so past 10 instances index 10 gives \(flags.contains("-") ? "10" + fill : fill + "10") where supervisord gave 10")
            return flags.contains("-") ? "{index}" + fill : fill + "{index}"
        }
        notes.append("\(spec) in \(place) became {index}: Muster's {index} has no width, so the padding to \(width) characters is lost")
        return "{index}"
    }
}
