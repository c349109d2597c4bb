import Access
import EventLog
import Foundation
import Hummingbird
import PipelineEngine

/// `GET /audit`: who did what, paged by log position.
extension APIServer {
    func addAuditRoute(to routes: Routes) {
        routes.on(.get, "/audit", .application(.read)) { request, context in
            let query = request.uri.queryParameters
            var filter = AuditLog.Filter()
            filter.actor = query["actor"].map(String.init)
            filter.application = query["application"].map(String.init)
            filter.type = query["type"].map(String.init)
            filter.includeSystem = try Self.boolean(query["includeSystem"], "includeSystem") ?? false
            for (name, keyPath) in [("since", \AuditLog.Filter.since), ("until", \AuditLog.Filter.until)] {
                guard let text = query[Substring(name)] else { continue }
                guard let date = ISO8601DateFormatter().date(from: String(text)) else {
                    throw APIError.badRequest("\(name) must be an ISO 8601 time such as 2026-11-27T10:00:00Z, got '\(text)'")
                }
                filter[keyPath: keyPath] = date
            }
            if let after = query["after"] {
                guard let value = Int64(after), value >= 0 else { throw APIError.badRequest("after must be a log position, got '\(after)'") }
                filter.after = value
            }
            if let limit = query["limit"] {
                guard let value = Int(limit), (1...1000).contains(value) else { throw APIError.badRequest("limit must be 1…1000, got '\(limit)'") }
                filter.limit = value
            }
            // The whole log is for admins; an application's part for those who may read it.
            if let application = filter.application {
                try await authorize(context, .read, application: application)
            } else if try context.requireCaller().isAdmin == false {
                throw APIError(.forbidden, "forbidden", "only admins read the whole audit log; give application=NAME for one you may read")
            }
            let page: (entries: [AuditLog.Entry], next: Int64?)
            do {
                page = try await AuditLog(client: client, logger: logger).page(filter)
            } catch EventStoreError.unknownPosition(let position) {
                throw APIError.badRequest("after: no event has global position \(position); continue with the next of a page you read")
            }
            return try Self.json(EventPage(events: page.entries, next: page.next))
        }
    }
}

/// A page of events (of the audit log, or of one execution's timeline); `next` continues it
/// (`?after=next`), nil at the end.
struct EventPage: Encodable {
    let events: [AuditLog.Entry]
    let next: Int64?

    enum CodingKeys: String, CodingKey { case events, next }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(events, forKey: .events)
        // Explicitly null at the end, so clients need not tell "absent" from "last page".
        try container.encode(next, forKey: .next)
    }
}
