/// Who and what caused an event. Stored beside every event and carried onto Kafka.
public struct EventMetadata: Hashable, Sendable, Codable {
    /// Shared by every event that one user action or trigger led to.
    public var correlationID: String?
    /// The id of the event or command that directly caused this one.
    public var causationID: String?
    /// The user, service account or system component that acted.
    public var actor: String?
    /// Where the action came from: `api`, `cli`, `webhook`, `ci`, `cron`, or a role name.
    public var source: String?
    /// W3C trace context (`traceparent`) of the operation that appended the event.
    public var traceParent: String?

    public init(
        correlationID: String? = nil, causationID: String? = nil, actor: String? = nil,
        source: String? = nil, traceParent: String? = nil
    ) {
        self.correlationID = correlationID
        self.causationID = causationID
        self.actor = actor
        self.source = source
        self.traceParent = traceParent
    }

    enum CodingKeys: String, CodingKey {
        case correlationID = "correlationId"
        case causationID = "causationId"
        case actor, source
        case traceParent = "traceparent"
    }
}
