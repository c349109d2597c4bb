@testable import PostgresEventStore
import Testing

@Suite("SQL script splitting", .timeLimit(.minutes(1)))
struct SQLScriptTests {
    @Test func splitsAtTopLevelSemicolons() {
        #expect(SQLScript.statements(in: "CREATE TABLE a (x int); CREATE TABLE b (y int);\n") ==
            ["CREATE TABLE a (x int)", "CREATE TABLE b (y int)"])
    }

    @Test func keepsQuotedSemicolons() {
        let script = "INSERT INTO t VALUES ('a;b', 'it''s;'); SELECT \"we;ird\" FROM t"
        #expect(SQLScript.statements(in: script) == ["INSERT INTO t VALUES ('a;b', 'it''s;')", "SELECT \"we;ird\" FROM t"])
    }

    @Test func keepsDollarQuotedBodies() {
        let script = """
            CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;
            CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN 2; END $body$;
            """
        let statements = SQLScript.statements(in: script)
        #expect(statements.count == 2)
        #expect(statements[0].hasSuffix("END $$"))
        #expect(statements[1].hasSuffix("END $body$"))
    }

    @Test func ignoresComments() {
        let script = "-- a comment; with a semicolon\nSELECT 1; /* block; comment */ SELECT 2;\n-- trailing"
        #expect(SQLScript.statements(in: script) == ["-- a comment; with a semicolon\nSELECT 1", "/* block; comment */ SELECT 2"])
    }

    @Test func positionalParametersAreNotDollarQuotes() {
        #expect(SQLScript.statements(in: "SELECT $1; SELECT $2") == ["SELECT $1", "SELECT $2"])
    }
}
