import struct Foundation.UUID

/// An event on its way into the log.
public struct NewEvent: Hashable, Sendable {
    /// Chosen by the appender so that a retried append is recognised and not stored twice.
    public var id: UUID
    /// The stable wire name, e.g. `execution.stage.started`; never a Swift type name.
    public var type: String
    public var schemaVersion: Int
    public var payload: JSONText
    public var metadata: EventMetadata

    public init(
        id: UUID = UUID(), type: String, schemaVersion: Int = 1, payload: JSONText,
        metadata: EventMetadata = EventMetadata()
    ) {
        self.id = id
        self.type = type
        self.schemaVersion = schemaVersion
        self.payload = payload
        self.metadata = metadata
    }
}
