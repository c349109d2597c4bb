/// The append-only event log: the port every role writes to and reads from.
public protocol EventStore: Sendable {
    /// Appends `events` to `stream` atomically if the stream is at `expected`.
    ///
    /// Appending an event whose id is already stored in the same stream does nothing and returns
    /// the stored result, so a client may retry an append whose outcome it did not learn.
    func append(to stream: StreamID, expected: ExpectedVersion, events: [NewEvent]) async throws -> AppendResult

    /// Reads up to `limit` events of `stream`, starting at `version` in `direction`.
    func readStream(_ stream: StreamID, from version: Int64, direction: ReadDirection, limit: Int) async throws -> [RecordedEvent]

    /// Reads up to `limit` committed events that follow `position` in log order. Never returns an
    /// event while a transaction that could commit before it is still open.
    func readAll(after position: LogPosition, limit: Int) async throws -> [RecordedEvent]

    /// The log position just before the event with global position `position`, so that reading
    /// after it starts with that event.
    func logPosition(before position: Int64) async throws -> LogPosition
}

public enum ReadDirection: Sendable, Hashable {
    case forward, backward
}

/// What an append stored.
public struct AppendResult: Hashable, Sendable {
    /// The global positions of the appended events, in order.
    public var positions: [Int64]
    /// The stream's version after the append (the version of the last event appended).
    public var streamVersion: Int64
    /// True when every event was already stored by an earlier append with the same ids.
    public var alreadyStored: Bool

    public init(positions: [Int64], streamVersion: Int64, alreadyStored: Bool) {
        self.positions = positions
        self.streamVersion = streamVersion
        self.alreadyStored = alreadyStored
    }
}

/// Errors of the event log that callers act on.
public enum EventStoreError: Error, Hashable, CustomStringConvertible {
    /// The stream was not at the expected version; re-read, re-decide and try again.
    case versionConflict(stream: StreamID, expected: ExpectedVersion, actual: Int64)
    /// An event's payload is larger than the configured limit.
    case payloadTooLarge(eventType: String, bytes: Int, limit: Int)
    /// An append with no events.
    case emptyAppend(stream: StreamID)
    /// Some but not all of the event ids were stored before, or stored in another stream.
    case eventIDReused(stream: StreamID, detail: String)
    /// An event type that is not a wire name.
    case invalidEventType(String)
    /// No event has this global position.
    case unknownPosition(Int64)

    public var description: String {
        switch self {
        case let .versionConflict(stream, expected, actual):
            "version conflict on \(stream): expected version \(expected), but the stream is at \(actual)"
        case let .payloadTooLarge(type, bytes, limit):
            "payload of a '\(type)' event is \(bytes) bytes, over the limit of \(limit) bytes"
        case let .emptyAppend(stream):
            "nothing to append to \(stream): no events given"
        case let .eventIDReused(stream, detail):
            "event ids reused on \(stream): \(detail)"
        case let .invalidEventType(type):
            "invalid event type '\(type)': use 1 to 200 letters, digits, '.', '_' or '-'"
        case let .unknownPosition(position):
            "no event has global position \(position)"
        }
    }
}

extension NewEvent {
    /// Checks what can be checked before talking to the store.
    public func validate(payloadLimit: Int) throws(EventStoreError) {
        let allowed = type.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2E || byte == 0x5F || byte == 0x2D
        }
        guard !type.isEmpty, type.utf8.count <= 200, allowed else { throw .invalidEventType(type) }
        guard payload.byteCount <= payloadLimit else {
            throw .payloadTooLarge(eventType: type, bytes: payload.byteCount, limit: payloadLimit)
        }
    }
}
