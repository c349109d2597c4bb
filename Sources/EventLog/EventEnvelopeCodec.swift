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

    /// Decodes what ``encode(_:)`` wrote.
    public static func decode(_ text: String) throws -> RecordedEvent {
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) as? [String: Any] else {
            throw EnvelopeError.notAnObject
        }
        func field<T>(_ name: String, as: T.Type) throws -> T {
            guard let value = object[name] as? T else { throw EnvelopeError.missingField(name) }
            return value
        }
        guard let id = UUID(uuidString: try field("id", as: String.self)) else { throw EnvelopeError.invalidField("id") }
        guard let time = parseDate(try field("time", as: String.self)) else { throw EnvelopeError.invalidField("time") }
        let metadataObject = try field("metadata", as: [String: Any].self)
        let metadataData = try JSONSerialization.data(withJSONObject: metadataObject)
        let payloadData = try JSONSerialization.data(withJSONObject: object["data"] ?? NSNull(), options: [.fragmentsAllowed, .sortedKeys])
        return RecordedEvent(
            id: id,
            streamID: try StreamID(try field("stream", as: String.self)),
            streamVersion: try field("version", as: NSNumber.self).int64Value,
            logPosition: LogPosition(
                transaction: try field("transaction", as: NSNumber.self).int64Value,
                position: try field("position", as: NSNumber.self).int64Value
            ),
            type: try field("type", as: String.self),
            schemaVersion: try field("schemaVersion", as: NSNumber.self).intValue,
            recordedAt: time,
            payload: JSONText(unchecked: String(decoding: payloadData, as: UTF8.self)),
            metadata: try JSONDecoder().decode(EventMetadata.self, from: metadataData)
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
        return EventMetadata(
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
