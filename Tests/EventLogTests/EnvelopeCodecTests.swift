import EventLog
import Foundation
import Testing

@Suite("Event envelope codec", .timeLimit(.minutes(1)))
struct EnvelopeCodecTests {
    static let event = RecordedEvent(
        id: UUID(uuidString: "7066DC48-13F4-4848-BA9E-2C6982DC9365")!,
        streamID: try! StreamID("deploy-42"),
        streamVersion: 3,
        logPosition: LogPosition(transaction: 739, position: 12),
        type: "deploy.requested",
        schemaVersion: 2,
        recordedAt: Date(timeIntervalSince1970: 1_795_000_000.125),
        payload: JSONText(unchecked: #"{"artifact":"web:1.2.3","note":"quote \" and \\ and \n"}"#),
        metadata: EventMetadata(correlationID: "corr", causationID: "cause", actor: "alice", source: "api", traceParent: "00-abc-def-01")
    )

    @Test func roundTrips() throws {
        let text = EventEnvelopeCodec.encode(Self.event)
        let decoded = try EventEnvelopeCodec.decode(text)
        #expect(decoded.id == Self.event.id)
        #expect(decoded.streamID == Self.event.streamID)
        #expect(decoded.streamVersion == 3)
        #expect(decoded.logPosition == Self.event.logPosition)
        #expect(decoded.type == "deploy.requested")
        #expect(decoded.schemaVersion == 2)
        #expect(decoded.recordedAt == Self.event.recordedAt)
        #expect(decoded.metadata == Self.event.metadata)
        #expect(try decoded.payload.decode([String: String].self) == ["artifact": "web:1.2.3", "note": "quote \" and \\ and \n"])
    }

    /// The wire format is a contract with consumers: field names and shapes must not drift.
    @Test func matchesTheWireFixture() throws {
        let text = EventEnvelopeCodec.encode(Self.event)
        #expect(text == """
            {"id":"7066dc48-13f4-4848-ba9e-2c6982dc9365","stream":"deploy-42","version":3,"position":12,"transaction":739,\
            "type":"deploy.requested","schemaVersion":2,"time":"2026-11-18T11:06:40.125Z","metadata":{"actor":"alice",\
            "causationId":"cause","correlationId":"corr","source":"api","traceparent":"00-abc-def-01"},\
            "data":{"artifact":"web:1.2.3","note":"quote \\" and \\\\ and \\n"}}
            """)
        #expect(try JSONSerialization.jsonObject(with: Data(text.utf8)) is [String: Any])
    }

    @Test func leavesUnsetMetadataOut() {
        #expect(EventEnvelopeCodec.encodeMetadata(EventMetadata()) == "{}")
        #expect(EventEnvelopeCodec.encodeMetadata(EventMetadata(actor: "bob")) == #"{"actor":"bob"}"#)
    }

    @Test func rejectsMalformedEnvelopes() {
        #expect(throws: (any Error).self) { try EventEnvelopeCodec.decode("[]") }
        #expect(throws: (any Error).self) { try EventEnvelopeCodec.decode(#"{"id":"x"}"#) }
    }

    @Test func quotesControlCharacters() {
        #expect("a\u{1}b\"".jsonQuoted == #""a\u0001b\"""#)
    }

    @Test func cloudEventHeaders() {
        let headers = Dictionary(uniqueKeysWithValues: CloudEventHeaders.make(for: Self.event, source: "/topsail"))
        #expect(headers["ce_specversion"] == "1.0")
        #expect(headers["ce_id"] == "7066dc48-13f4-4848-ba9e-2c6982dc9365")
        #expect(headers["ce_type"] == "deploy.requested")
        #expect(headers["ce_source"] == "/topsail")
        #expect(headers["ce_time"] == "2026-11-18T11:06:40.125Z")
        #expect(headers["topsail_stream_version"] == "3")
        #expect(headers["topsail_position"] == "12")
    }
}

@Suite("New events", .timeLimit(.minutes(1)))
struct NewEventTests {
    @Test func validatesTypeAndPayloadSize() throws {
        #expect(throws: EventStoreError.invalidEventType("has space")) {
            try NewEvent(type: "has space", payload: .emptyObject).validate(payloadLimit: 100)
        }
        #expect(throws: EventStoreError.invalidEventType("")) {
            try NewEvent(type: "", payload: .emptyObject).validate(payloadLimit: 100)
        }
        #expect(throws: EventStoreError.payloadTooLarge(eventType: "a.b", bytes: 12, limit: 10)) {
            try NewEvent(type: "a.b", payload: JSONText(#"{"k":"abcd"}"#)).validate(payloadLimit: 10)
        }
        try NewEvent(type: "execution.stage-started_v2", payload: .emptyObject).validate(payloadLimit: 10)
    }

    @Test func jsonTextRejectsNonJSON() {
        #expect(throws: JSONTextError.self) { try JSONText("{nope") }
        #expect(throws: JSONTextError.self) { try JSONText("") }
        #expect(throws: Never.self) { try JSONText("42") }
    }

    @Test func expectedVersions() {
        #expect(ExpectedVersion.any.requiredCurrentVersion == nil)
        #expect(ExpectedVersion.noStream.requiredCurrentVersion == 0)
        #expect(ExpectedVersion.exact(7).requiredCurrentVersion == 7)
    }

    @Test func logPositionsOrderByTransactionThenPosition() {
        #expect(LogPosition(transaction: 5, position: 100) < LogPosition(transaction: 6, position: 1))
        #expect(LogPosition(transaction: 5, position: 1) < LogPosition(transaction: 5, position: 2))
        #expect(LogPosition.start < LogPosition(transaction: 1, position: 1))
    }
}
