import ArgumentParser
import CLISupport
import EventLog
import Foundation
import PostgresEventStore

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Append to and read the event log.",
        subcommands: [AppendEventCommand.self, ReadEventsCommand.self, TailEventsCommand.self, VerifyEventsCommand.self]
    )
}

struct AppendEventCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "append",
        abstract: "Append one event to a stream and print its global position."
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "The stream, category-id (e.g. deploy-42).")
    var stream: String

    @Option(help: "The event type, a stable wire name (e.g. deploy.requested).")
    var type: String

    @Option(help: "The payload, a JSON document.")
    var data: String

    @Option(help: "The version the stream must be at: a number, 'any' or 'no-stream'.")
    var expectedVersion: String = "any"

    @Option(help: "The event id (UUID); retrying with the same id does not store the event twice.")
    var id: String?

    @Option(help: "The actor recorded in the event's metadata.")
    var actor: String?

    @Option(help: "The payload size limit in bytes.")
    var maxPayloadBytes: Int = PostgresEventStore.defaultPayloadLimit

    func run() async throws {
        let streamID = try StreamID(stream)
        let expected = try parseExpectedVersion(expectedVersion)
        let payload = try JSONText(data)
        var eventID = UUID()
        if let id {
            guard let parsed = UUID(uuidString: id) else { throw ValidationError("--id '\(id)' is not a UUID") }
            eventID = parsed
        }
        let event = NewEvent(id: eventID, type: type, payload: payload, metadata: EventMetadata(
            correlationID: eventID.uuidString.lowercased(), actor: actor ?? ProcessInfo.processInfo.environment["USER"], source: "cli"))
        try event.validate(payloadLimit: maxPayloadBytes)
        let database = try options.database()
        let logger = options.logger("topsail.events")
        let limit = maxPayloadBytes
        let result = try await withDatabase(database, logger: logger) { client in
            try await PostgresEventStore(client: client, payloadLimit: limit, logger: logger)
                .append(to: streamID, expected: expected, events: [event])
        }
        print(result.positions.last.map(String.init) ?? "")
    }

    private func parseExpectedVersion(_ text: String) throws -> ExpectedVersion {
        switch text {
        case "any": return .any
        case "no-stream": return .noStream
        default:
            guard let version = Int64(text), version >= 0 else {
                throw ValidationError("--expected-version must be a number, 'any' or 'no-stream', not '\(text)'")
            }
            return version == 0 ? .noStream : .exact(version)
        }
    }
}

struct ReadEventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read",
        abstract: "Print events as JSON lines, of one stream or of the whole log in log order."
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Read this stream (category-id).")
    var stream: String?

    @Flag(help: "Read the whole log.")
    var all = false

    @Option(help: "With --stream: the first version to print. With --all: the global position of the first event to print.")
    var from: Int64?

    @Flag(help: "With --stream: newest first.")
    var backward = false

    @Option(help: "Print at most this many events.")
    var limit: Int?

    func validate() throws {
        guard (stream == nil) != (all == false) else {
            throw ValidationError("give exactly one of --stream S and --all")
        }
        if let limit, limit <= 0 { throw ValidationError("--limit must be positive") }
        if backward && all { throw ValidationError("--backward reads one stream; it does not apply to --all") }
    }

    func run() async throws {
        let database = try options.database()
        let logger = options.logger("topsail.events")
        let streamID = try stream.map { text throws(StreamIDError) in try StreamID(text) }
        let (from, limit, backward) = (self.from, self.limit ?? Int.max, self.backward)
        try await withDatabase(database, logger: logger) { client in
            let store = PostgresEventStore(client: client, logger: logger)
            var printed = 0
            let batchSize = 500
            if let streamID {
                var version = from ?? (backward ? Int64.max : 1)
                while printed < limit {
                    let wanted = min(batchSize, limit - printed)
                    let events = try await store.readStream(streamID, from: version, direction: backward ? .backward : .forward, limit: wanted)
                    for event in events { print(EventEnvelopeCodec.encode(event)) }
                    printed += events.count
                    guard let last = events.last, events.count == wanted else { break }
                    version = backward ? last.streamVersion - 1 : last.streamVersion + 1
                }
            } else {
                var position = LogPosition.start
                if let from { position = try await store.logPosition(before: from) }
                while printed < limit {
                    let events = try await store.readAll(after: position, limit: min(batchSize, limit - printed))
                    for event in events { print(EventEnvelopeCodec.encode(event)) }
                    printed += events.count
                    guard let last = events.last else { break }
                    position = last.logPosition
                }
            }
        }
    }
}

struct TailEventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Follow the log: print each event as a JSON line as soon as it commits (Ctrl-C stops).",
        discussion: "Starts after the newest event, or at --from."
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "The global position of the first event to print (default: only new events).")
    var from: Int64?

    @Option(help: "Only events of streams in this category.")
    var category: String?

    func run() async throws {
        let database = try options.database()
        let logger = options.logger("topsail.events")
        let (from, category) = (self.from, self.category)
        try await withDatabase(database, logger: logger) { client in
            let store = PostgresEventStore(client: client, logger: logger)
            var start = LogPosition.start
            var alreadyCommitted: Set<UUID> = []
            if let from {
                start = try await store.logPosition(before: from)
            } else {
                (start, alreadyCommitted) = try await store.liveStart()
            }
            // On standard error, so that standard output stays JSON lines.
            FileHandle.standardError.write(Data("tail: following the log after position \(start.position)\n".utf8))
            for try await event in LogSubscription(store: store, after: start) {
                if alreadyCommitted.remove(event.id) != nil { continue }
                if let category, event.streamID.category != category { continue }
                Output.line(EventEnvelopeCodec.encode(event))
            }
        }
    }
}

struct VerifyEventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check the log's hash chains: every event's hash covers its content and the event before it in its stream.",
        discussion: """
            Exit 0 when every chain is intact; exit 1 naming the first broken link (stream, version, position and \
            what is wrong) when an event was changed, removed or reordered behind Topsail's back. Events cut from the \
            end of a stream leave a shorter intact chain and are not detected here.
            """
    )

    @OptionGroup var options: CommonOptions

    @Option(help: "Check only this stream (category-id).")
    var stream: String?

    @Option(help: "Broken links to list at most.")
    var limit: Int = 20

    func run() async throws {
        if let stream { _ = try StreamID(stream) }
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 10000") }
        let logger = options.logger("topsail.events")
        let (stream, limit) = (stream, limit)
        let report = try await withDatabase(try options.database(), logger: logger) { client in
            try await ChainVerifier(client: client, logger: logger).verify(stream: stream, limit: limit)
        }
        guard let first = report.broken.first else {
            print("verified \(report.events) events in \(report.streams) streams: every chain is intact")
            return
        }
        FileHandle.standardError.write(Data("""
            the log was changed behind Topsail's back: the first broken link is \(first)
            broken links (\(report.broken.count)\(report.broken.count == limit ? " or more" : "")):
            \(report.broken.map { "  \($0)" }.joined(separator: "\n"))

            """.utf8))
        throw ExitCode(1)
    }
}
