import struct Foundation.Date
import struct Foundation.UUID

/// An event as stored in the log.
public struct RecordedEvent: Hashable, Sendable {
    public var id: UUID
    public var streamID: StreamID
    /// 1 for a stream's first event, then counting up without gaps.
    public var streamVersion: Int64
    /// Where the event sits in the global log (see ``LogPosition``).
    public var logPosition: LogPosition
    public var type: String
    public var schemaVersion: Int
    public var recordedAt: Date
    public var payload: JSONText
    public var metadata: EventMetadata

    /// The event's global position: unique, and increasing in log order within a transaction.
    public var position: Int64 { logPosition.position }

    public init(
        id: UUID, streamID: StreamID, streamVersion: Int64, logPosition: LogPosition, type: String,
        schemaVersion: Int, recordedAt: Date, payload: JSONText, metadata: EventMetadata
    ) {
        self.id = id
        self.streamID = streamID
        self.streamVersion = streamVersion
        self.logPosition = logPosition
        self.type = type
        self.schemaVersion = schemaVersion
        self.recordedAt = recordedAt
        self.payload = payload
        self.metadata = metadata
    }
}
