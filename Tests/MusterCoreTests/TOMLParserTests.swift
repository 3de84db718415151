import Glibc
import MusterCore
import Testing

/// `TOMLDocument.parse` is our own TOML 1.0 reader (TOMLKit 0.6.0 leaked every document it parsed,
/// and musterd parses every manifest on each reload). These pin the behaviour it shares with the
/// toml++ parser it replaced, and that parsing leaves nothing behind.
@Suite("TOML reading")
struct TOMLParserTests {
    private func parse(_ text: String) throws(TOMLSyntaxError) -> TOMLNode {
        .table(try TOMLDocument.parse(text))
    }

    private func error(_ text: String) -> TOMLSyntaxError? {
        do {
            _ = try TOMLDocument.parse(text)
            return nil
        } catch {
            return error
        }
    }

    @Test func readsEveryKindOfValue() throws {
        let node = try parse("""
            s = "a \\"quoted\\" \\u00e9 \\U0001F600 tab\\there"
            l = 'C:\\path\\no\\escapes'
            i = 1_000
            n = -17
            h = 0xDEAD_beef
            o = 0o755
            b = 0b1010
            f = 6.626e-34
            g = -0.5
            t = true
            u = false
            big = 9223372036854775807
            small = -9223372036854775808
            d = 1979-05-27
            dt = 1979-05-27T07:32:00-08:00
            ldt = 1979-05-27 07:32:00.999
            lt = 07:32:00
            a = [1, "two", [3.0], { four = 4 }]
            e = []
            it = { x = 1, y.z = "dotted" }
            """)
        let expected = TOMLNode.table([
            (key: "a", value: .array([.integer(1), .string("two"), .array([.float(3)]), .table([(key: "four", value: .integer(4))])])),
            (key: "b", value: .integer(10)),
            (key: "big", value: .integer(Int.max)),
            (key: "d", value: .other("a date")),
            (key: "dt", value: .other("a date-time")),
            (key: "e", value: .array([])),
            (key: "f", value: .float(6.626e-34)),
            (key: "g", value: .float(-0.5)),
            (key: "h", value: .integer(0xDEAD_BEEF)),
            (key: "i", value: .integer(1000)),
            (key: "it", value: .table([(key: "x", value: .integer(1)), (key: "y", value: .table([(key: "z", value: .string("dotted"))]))])),
            (key: "l", value: .string(#"C:\path\no\escapes"#)),
            (key: "ldt", value: .other("a date-time")),
            (key: "lt", value: .other("a time")),
            (key: "n", value: .integer(-17)),
            (key: "o", value: .integer(0o755)),
            (key: "s", value: .string("a \"quoted\" é 😀 tab\there")),
            (key: "small", value: .integer(Int.min)),
            (key: "t", value: .boolean(true)),
            (key: "u", value: .boolean(false)),
        ])
        #expect(node == expected, "\(node.rendered)")
    }

    @Test func readsInfinityAndNaN() throws {
        let node = try parse("p = inf\nm = -inf\nn = nan\n")
        guard case .table(let entries) = node, entries.count == 3,
              case .float(let minus) = entries[0].value, case .float(let nan) = entries[1].value, case .float(let plus) = entries[2].value else {
            Issue.record("got \(node.rendered)")
            return
        }
        #expect(minus == -.infinity)
        #expect(nan.isNaN)
        #expect(plus == .infinity)
    }

    @Test func keepsKeysInByteOrderAsTOMLKitDid() throws {
        let entries = try TOMLDocument.parse("b = 1\na = 2\nB = 3\n\"ä\" = 4\n_ = 5\n\"~\" = 6\n\"\" = 7\n")
        #expect(entries.map(\.key) == ["", "B", "_", "a", "b", "~", "ä"])
    }

    @Test func buildsTablesFromHeadersDottedKeysAndArraysOfTables() throws {
        let node = try parse("""
            top = 1
            [server]
            host.name = "web"
            host.port = 80
            [server.limits]
            max = 5
            [[route]]
            path = "/a"
            [[route]]
            path = "/b"
            [route.match]
            prefix = true
            [x.y.z]
            [x]
            w = 0
            """)
        let expected = TOMLNode.table([
            (key: "route", value: .array([
                .table([(key: "path", value: .string("/a"))]),
                .table([(key: "match", value: .table([(key: "prefix", value: .boolean(true))])), (key: "path", value: .string("/b"))]),
            ])),
            (key: "server", value: .table([
                (key: "host", value: .table([(key: "name", value: .string("web")), (key: "port", value: .integer(80))])),
                (key: "limits", value: .table([(key: "max", value: .integer(5))])),
            ])),
            (key: "top", value: .integer(1)),
            (key: "x", value: .table([(key: "w", value: .integer(0)), (key: "y", value: .table([(key: "z", value: .table([]))]))])),
        ])
        #expect(node == expected, "\(node.rendered)")
    }

    @Test func readsMultiLineStringsAndLineEndings() throws {
        let node = try parse("a = \"\"\"\nfirst\r\nsecond \\\n    joined\"\"\"\r\nb = '''\nraw \\n ''quotes'''''\nc = \"\"\"x\"\"\"\"\"\n")
        let expected = TOMLNode.table([
            (key: "a", value: .string("first\nsecond joined")),
            (key: "b", value: .string("raw \\n ''quotes''")),
            (key: "c", value: .string("x\"\"")),
        ])
        #expect(node == expected, "\(node.rendered)")
    }

    /// Each of these was refused by toml++ too (checked against TOMLKit 0.6.0 while replacing it).
    static let refused = [
        "a = 1\na = 2", "a = 1\na.b = 2", "a.b = 1\na = 2", "a = { x = 1 }\na.y = 2", "a = { x = 1, }", "a = { x = 1\n}",
        "[a]\n[a]", "[a]\nb = 1\n[a.c]\n[a]", "[fruit]\napple.color = 1\n[fruit.apple]", "[a.b.c]\nz = 9\n[a]\nb.c.t = 1",
        "[a.b.c]\n[a]\nb.x = 1\n[a.b]", "[[a]]\n[a]", "[a]\n[[a]]", "a = []\n[[a]]", "a = 1\n[a.b]", "a = { b = 1 }\n[a.c]",
        "[]", "[ [a] ]", "[a] b = 1", "a = 1 b = 2", "a =", "= 1", "a", "a = [1 2]", "a = [1,,2]", "a = {,}", "a = \"x\" \"y\"",
        "d = 00", "d = 01", "d = 0x", "d = +0x10", "d = 1__0", "d = _1", "d = 1_", "d = 9223372036854775808", "d = -9223372036854775809",
        "d = 0xFFFFFFFFFFFFFFFF", "d = 0X10", "d = 1.", "d = .5", "d = 1e", "d = 1e400", "d = 01.5", "d = Inf", "d = True", "d = truex",
        "d = 1979-02-29", "d = 1979-13-01", "d = 24:00:00", "d = 23:59:60", "d = 07:32", "d = 1979-05-27T07:32:00+24:00", "d = 1979-05-27 x",
        "s = \"\\x41\"", "s = \"\\uD800\"", "s = \"\\U00110000\"", "s = \"open", "s = 'open", "s = \"\"\"open", "s = \"\"\"x\"\"\"\"\"\"",
        "s = \"del \u{7F}\"", "s = \"nul \u{0}\"", "# bell \u{7}", "a = 1\r", "\"\"\"k\"\"\" = 1", "a = bare",
    ]

    @Test(arguments: refused)
    func refusesWhatTOMLRefuses(_ text: String) {
        let refusal = error(text)
        #expect(refusal != nil, "accepted \(text.debugDescription)")
    }

    @Test func namesTheLineAndColumnOfAnError() {
        let doubled = error("command = [\"/bin/true\"]\ninstances = = 2\n")
        #expect(doubled?.line == 2)
        #expect(doubled?.column == 13)
        let redefined = error("[a]\nx = 1\n\n[a]\n")
        #expect(redefined?.line == 4)
        #expect(redefined?.column == 1)
        #expect(redefined?.message == "the table 'a' is defined more than once")
        // Columns count characters, not bytes.
        let afterAccent = error("k = \"é\" x\n")
        #expect(afterAccent?.line == 1)
        #expect(afterAccent?.column == 9)
        // An unclosed multi-line string points at where it opens, not at the end of the file.
        let unclosed = error("a = 1\nb = \"\"\"\nnever\nclosed\n")
        #expect(unclosed?.line == 2)
        #expect(unclosed?.column == 5)
    }

    @Test func boundsNesting() {
        let deep = "a = " + String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        let accepted = error(deep) == nil
        #expect(accepted)
        let tooDeep = "a = " + String(repeating: "[", count: 100_000)
        let refusal = error(tooDeep)
        #expect(refusal?.message.contains("nested") == true)
        let longKey = Array(repeating: "k", count: 10_000).joined(separator: ".") + " = 1"
        let keyRefusal = error(longKey)
        #expect(keyRefusal != nil)
    }

    // MARK: - Memory

    /// A document like a busy manifest folder's worth of TOML: every kind of value, tables,
    /// arrays of tables, dotted keys.
    static let largeDocument: String = {
        var text = "name = \"web\"\ncommand = [\"/usr/bin/python3\", \"-m\", \"http.server\", \"{port}\"]\n"
        for i in 0..<40 {
            text += """
                [section\(i)]
                text = "value \(i) with \\"escapes\\" and \\u00e9"
                literal = 'C:\\raw\\\(i)'
                number = \(i * 1_000)
                ratio = \(Double(i) / 7)
                on = \(i % 2 == 0)
                when = 1979-05-27T07:32:00Z
                list = [\(i), \(i + 1), "x", [1.5, 2.5], { k = "v" }]
                inline = { a = 1, b.c = "d" }
                dotted.key.path = "\(i)"
                [[section\(i).items]]
                id = \(i)
                [[section\(i).items]]
                id = \(i + 1)

                """
        }
        return text
    }()

    static let manifest = """
        name        = "web"
        command     = ["/usr/bin/python3", "-m", "http.server", "{port}"]
        directory   = "/srv/web"
        environment = { APP_ENV = "production" }
        instances   = 2
        [restart]
        policy      = "on-failure"
        backoff_min = "100ms"
        [stop]
        signal  = "INT"
        timeout = "4s"
        [health]
        check    = "http"
        path     = "/healthz"
        interval = "2s"
        [proxy]
        listen = ["127.0.0.1:8080"]
        """

    static let daemonConfig = """
        [daemon]
        services_dir   = "services.d"
        control_socket = "/run/muster/muster.sock"
        cgroup_root    = "auto"
        """

    private static func residentKiB() -> Int {
        let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return -1 }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 16384)
        let count = read(fd, &bytes, bytes.count)
        guard count > 0 else { return -1 }
        for line in String(decoding: bytes[0..<count], as: UTF8.self).split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ")[1]) ?? -1
        }
        return -1
    }

    private static func parseEverything() -> Int {
        var seen = 0
        if let entries = try? TOMLDocument.parse(largeDocument) { seen += entries.count }
        if let spec = try? ManifestDecoder.decode(manifest, fileName: "web.toml") { seen += spec.instances }
        if let config = try? DaemonConfig.decode(daemonConfig, path: "/etc/muster/musterd.toml") { seen += config.servicesDir.count }
        if (try? TOMLDocument.parse(manifest + "\nbroken = = 1\n")) == nil { seen += 1 }
        return seen
    }

    /// With TOMLKit every pass below kept about 270 KB (the C++ tree of each document and the
    /// buffers its accessors returned were never freed): about 8 MB a round. Growth is measured
    /// in rounds and the smallest is checked, so memory taken meanwhile by tests running beside
    /// this one in the same process cannot fail it.
    @Test func parsingAgainAndAgainKeepsNoMemory() {
        var seen = 0
        for _ in 0..<5 { seen += Self.parseEverything() }
        var growths: [Int] = []
        for _ in 0..<4 {
            let before = Self.residentKiB()
            for _ in 0..<30 { seen += Self.parseEverything() }
            growths.append(Self.residentKiB() - before)
        }
        #expect(seen > 0)
        let smallest = growths.min() ?? 0
        #expect(smallest < 2048, "VmRSS growth per round of 30 passes, KiB: \(growths)")
    }
}
