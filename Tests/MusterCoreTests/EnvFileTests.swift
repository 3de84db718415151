import MusterCore
import Testing

@Suite("env_file: the dotenv format")
struct EnvFileTests {
    private func pairs(_ text: String) throws -> [String] {
        try EnvFile.parse(text).map { "\($0.key)=\($0.value)" }
    }

    private func problem(_ text: String) -> EnvFile.Problem? {
        do {
            _ = try EnvFile.parse(text)
            return nil
        } catch {
            return error
        }
    }

    @Test func readsPlainExportedAndCommentedLinesInOrder() throws {
        let text = """
            # database
            DB_HOST=db.local

            export DB_PORT=5432
              TRIMMED =   spaced out   
            WITH_COMMENT=value # the rest is a comment
            HASH_INSIDE=a#b
            EMPTY=
            EMPTY_WITH_NOTE= # nothing
            """
        #expect(try pairs(text) == ["DB_HOST=db.local", "DB_PORT=5432", "TRIMMED=spaced out", "WITH_COMMENT=value",
                                     "HASH_INSIDE=a#b", "EMPTY=", "EMPTY_WITH_NOTE="])
    }

    @Test func singleQuotesAreLiteralAndDoubleQuotesKnowFourEscapes() throws {
        let text = #"""
            SINGLE='a \n $HOME # not a comment'
            DOUBLE="say \"hi\"\\ \$5\nnext" # comment
            OTHER="keeps \t as written"
            MULTI="line one
            line two"
            """#
        #expect(try pairs(text) == [#"SINGLE=a \n $HOME # not a comment"#, "DOUBLE=say \"hi\"\\ $5\nnext",
                                     #"OTHER=keeps \t as written"#, "MULTI=line one\nline two"])
    }

    @Test func crlfLineEndingsAreTolerated() throws {
        #expect(try pairs("A=1\r\nB=\"two\"\r\n# c\r\n\r\nC=3") == ["A=1", "B=two", "C=3"])
    }

    @Test func aLineWithoutEqualsIsAnErrorWithItsLineNumber() {
        let found = problem("A=1\n# fine\nFOO BAR\n")
        #expect(found == EnvFile.Problem(line: 3, message: #""FOO BAR" is not KEY=value"#))
    }

    @Test func keysMustBeVariableNames() {
        #expect(problem("1ABC=x")?.message.hasPrefix(#""1ABC" is not a variable name"#) == true)
        #expect(problem("A-B=x")?.line == 1)
        #expect(problem("\n\nMY KEY=x")?.line == 3)
    }

    @Test func anUnclosedQuoteNamesTheLineItOpenedOn() {
        let found = problem("A=1\nB=\"never closed\nC=3\n")
        #expect(found == EnvFile.Problem(line: 2, message: "B: the \" opened here is never closed"))
    }

    @Test func textAfterAClosingQuoteIsAnError() {
        #expect(problem("A='x' y")?.message == #"A: unexpected "y" after the closing quote (quote the whole value)"#)
    }

    @Test func laterFilesWinOverEarlierOnes() {
        let merged = EnvFile.merge([[("A", "1"), ("B", "1")], [("B", "2")], [("A", "3"), ("A", "4")]])
        #expect(merged == ["A": "4", "B": "2"])
    }
}
