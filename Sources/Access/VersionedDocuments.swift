import EventLog
import Foundation

/// Configuration kept as event streams (Front50's job): each document is the stream
/// `<category>-<id>`; a save appends `<category>.saved` with the whole document, a delete appends
/// `<category>.deleted`, so the stream is the document's history and nothing is ever lost.
public struct VersionedDocuments: Sendable {
    public let category: String
    let store: any EventStore

    public init(category: String, store: any EventStore) {
        self.category = category
        self.store = store
    }

    public var savedType: String { "\(category).saved" }
    public var deletedType: String { "\(category).deleted" }

    /// A version of a document in its history.
    public struct Version: Sendable, Encodable {
        public let version: Int64
        public let recordedAt: Date
        public let actor: String?
        public let source: String?
        /// Nil for a deletion.
        public let document: JSONValue?
        public let deleted: Bool
    }

    func stream(_ id: String) throws -> StreamID { try StreamID(category: category, id: id) }

    /// Saves `document` as the newest version of `id`; returns that version. With `basedOn`, the
    /// save is refused with a version conflict unless the document is still at that version (0:
    /// it must not exist yet), so a save from a stale copy loses nothing.
    @discardableResult
    public func save(_ document: JSONValue, id: String, basedOn version: Int64? = nil, metadata: EventMetadata) async throws -> Int64 {
        let event = NewEvent(type: savedType, payload: try JSONText(encoding: JSONValue.object([category: document])), metadata: metadata)
        let expected: ExpectedVersion = version.map { $0 == 0 ? .noStream : .exact($0) } ?? .any
        return try await store.append(to: try stream(id), expected: expected, events: [event]).streamVersion
    }

    /// Deletes the document (its history stays); returns the new version, or nil when there was
    /// nothing to delete.
    public func delete(_ id: String, metadata: EventMetadata) async throws -> Int64? {
        let stream = try stream(id)
        guard let last = try await store.readStream(stream, from: .max, direction: .backward, limit: 1).first, last.type == savedType
        else { return nil }
        let event = NewEvent(type: deletedType, payload: try JSONText(encoding: JSONValue.object(["id": .string(id)])), metadata: metadata)
        return try await store.append(to: stream, expected: .exact(last.streamVersion), events: [event]).streamVersion
    }

    /// The latest version of `id` and its number, or nil when none was saved or it was deleted.
    public func latest(_ id: String) async throws -> (document: JSONValue, version: Int64)? {
        guard let stream = try? stream(id),
              let last = try await store.readStream(stream, from: .max, direction: .backward, limit: 1).first,
              last.type == savedType,
              let document = try last.payload.decode(JSONValue.self)[category]
        else { return nil }
        return (document, last.streamVersion)
    }

    /// Every version of `id`, newest first (at most `limit`).
    public func history(_ id: String, limit: Int = 100) async throws -> [Version] {
        guard let stream = try? stream(id) else { return [] }
        return try await store.readStream(stream, from: .max, direction: .backward, limit: limit).map { event in
            let deleted = event.type == deletedType
            return Version(
                version: event.streamVersion, recordedAt: event.recordedAt, actor: event.metadata.actor, source: event.metadata.source,
                document: deleted ? nil : try event.payload.decode(JSONValue.self)[category], deleted: deleted)
        }
    }
}
