/// The CloudEvents Kafka binding (binary content mode) for a recorded event, plus the event's
/// place in its stream and in the log, so that consumers can dedupe without parsing the value.
public enum CloudEventHeaders {
    public static let specVersion = "ce_specversion"
    public static let id = "ce_id"
    public static let type = "ce_type"
    public static let source = "ce_source"
    public static let time = "ce_time"
    public static let subject = "ce_subject"
    public static let contentType = "content-type"
    public static let streamVersion = "topsail_stream_version"
    public static let position = "topsail_position"
    public static let transaction = "topsail_transaction"

    /// The headers for `event`; `source` is the CloudEvents source URI of this installation.
    public static func make(for event: RecordedEvent, source: String) -> [(String, String)] {
        [
            (specVersion, "1.0"),
            (id, event.id.uuidString.lowercased()),
            (type, event.type),
            (self.source, source),
            (time, EventEnvelopeCodec.formatDate(event.recordedAt)),
            (subject, event.streamID.description),
            (contentType, "application/json"),
            (streamVersion, String(event.streamVersion)),
            (position, String(event.position)),
            (transaction, String(event.logPosition.transaction)),
        ]
    }
}
