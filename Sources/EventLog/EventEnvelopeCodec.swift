import Foundation

/// The JSON form of a recorded event: the value of every Kafka message and each line of
/// `topsail events read`. Field names are part of the wire format; they only grow.
public enum EventEnvelopeCodec {
    /// RFC 3339 with milliseconds, in UTC.
    public static let dateStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// Encodes an event. The payload is spliced in as stored, not re-encoded.
    public static func encode(_ event: RecordedEvent) -> String {
        var out = "{\"id\":\(event.id.uuidString.lowercased().jsonQuoted)"
        out += ",\"stream\":\(event.streamID.description.jsonQuoted)"
        out += ",\"version\":\(event.streamVersion)"
        out += ",\"position\":\(event.position)"
        out += ",\"transaction\":\(event.logPosition.transaction)"
        out += ",\"type\":\(event.type.jsonQuoted)"
        out += ",\"schemaVersion\":\(event.schemaVersion)"
        out += ",\"time\":\(formatDate(event.recordedAt).jsonQuoted)"
        out += ",\"metadata\":\(encodeMetadata(event.metadata))"
        out += ",\"data\":\(event.payload.text)}"
        return out
    }

    /// Decodes what ``encode(_:)`` wrote (with Topsail's own parser and writer: every consumer
    /// decodes every message).
    public static func decode(_ text: String) throws -> RecordedEvent {
        guard case .object(let object) = try JSONParser.parse(text) else { throw EnvelopeError.notAnObject }
        func string(_ name: String) throws -> String {
            guard let value = object[name] else { throw EnvelopeError.missingField(name) }
            guard let text = value.stringValue else { throw EnvelopeError.invalidField(name) }
            return text
        }
        func integer(_ name: String) throws -> Int64 {
            guard let value = object[name] else { throw EnvelopeError.missingField(name) }
            guard let number = value.intValue else { throw EnvelopeError.invalidField(name) }
            return Int64(number)
        }
        guard let id = UUID(uuidString: try string("id")) else { throw EnvelopeError.invalidField("id") }
        guard let time = parseDate(try string("time")) else { throw EnvelopeError.invalidField("time") }
        guard case .object(let metadata)? = object["metadata"] else {
            throw object["metadata"] == nil ? EnvelopeError.missingField("metadata") : EnvelopeError.invalidField("metadata")
        }
        return RecordedEvent(
            id: id,
            streamID: try StreamID(try string("stream")),
            streamVersion: try integer("version"),
            logPosition: LogPosition(transaction: try integer("transaction"), position: try integer("position")),
            type: try string("type"),
            schemaVersion: Int(try integer("schemaVersion")),
            recordedAt: time,
            payload: JSONText(unchecked: try (object["data"] ?? .null).jsonText()),
            metadata: Self.metadata(metadata)
        )
    }

    /// Encodes metadata with only the fields that are set, in a stable order.
    public static func encodeMetadata(_ metadata: EventMetadata) -> String {
        var fields: [String] = []
        func add(_ key: String, _ value: String?) {
            if let value { fields.append("\(key.jsonQuoted):\(value.jsonQuoted)") }
        }
        add("actor", metadata.actor)
        add("causationId", metadata.causationID)
        add("correlationId", metadata.correlationID)
        add("source", metadata.source)
        add("traceparent", metadata.traceParent)
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// Reads what ``encodeMetadata(_:)`` wrote (unknown fields are ignored).
    public static func decodeMetadata(_ text: String) throws -> EventMetadata {
        guard case .object(let fields) = try JSONParser.parse(text) else { throw EnvelopeError.invalidField("metadata") }
        return metadata(fields)
    }

    private static func metadata(_ fields: [String: JSONValue]) -> EventMetadata {
        EventMetadata(
            correlationID: fields["correlationId"]?.stringValue, causationID: fields["causationId"]?.stringValue,
            actor: fields["actor"]?.stringValue, source: fields["source"]?.stringValue, traceParent: fields["traceparent"]?.stringValue)
    }

    public static func formatDate(_ date: Date) -> String { dateStyle.format(date) }
    public static func parseDate(_ text: String) -> Date? { try? dateStyle.parse(text) }
}

public enum EnvelopeError: Error, Equatable, CustomStringConvertible {
    case notAnObject
    case missingField(String)
    case invalidField(String)

    public var description: String {
        switch self {
        case .notAnObject: "event envelope is not a JSON object"
        case .missingField(let name): "event envelope has no valid '\(name)' field"
        case .invalidField(let name): "event envelope field '\(name)' is malformed"
        }
    }
}
