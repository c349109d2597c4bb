import Access
import Clouds
import EventLog
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PostgresEventStore

/// The web UI (decision 0020): its page and assets, browser sessions, and the live stream of the
/// log that keeps open pages current.
extension APIServer {
    func addUIRoutes(to routes: Routes) {
        let assets = UIAssets.shared
        routes.on(.get, "/", .open) { _, _ in try assets.response("index.html") }
        routes.on(.get, "/ui/assets/:file", .open) { _, context in try assets.response(try context.parameters.require("file")) }

        routes.on(.post, "/ui/session", .open) { request, context in
            guard let token = try await self.body(request)["token"]?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines), !token.isEmpty else {
                throw APIError.badRequest("give the API token (or a JWT from the OIDC issuer) to sign in with: {\"token\": \"tsk_…\"}")
            }
            let caller = try await AuthenticationMiddleware(identities: Identities(store: repository.eventStore), oidc: oidc).caller(for: token)
            let session = try await Identities(store: repository.eventStore).issueSession(
                for: caller, lifetime: Sessions.lifetime, metadata: Self.metadata(context))
            var response = try Self.json(SessionInfo(caller, csrf: Sessions.csrf(for: session.token)))
            response.headers[.setCookie] = Sessions.setCookie(session.token, request)
            return response
        }
        routes.on(.get, "/ui/session", .authenticated) { _, context in
            try Self.json(SessionInfo(try context.requireCaller(), csrf: context.session.map(Sessions.csrf(for:))))
        }
        routes.on(.delete, "/ui/session", .authenticated) { request, context in
            guard let session = context.session, let id = Sessions.tokenID(session) else {
                throw APIError.badRequest("there is no browser session to sign out of (this request was not made with the session cookie)")
            }
            _ = try await Identities(store: repository.eventStore).revoke(id: id, metadata: Self.metadata(context))
            var response = Self.json(["status": "signed out"])
            response.headers[.setCookie] = Sessions.clearCookie(request)
            return response
        }
        routes.on(.get, "/ui/stream", .authenticated) { request, context in
            try await liveStream(request, caller: try context.requireCaller())
        }
    }

    struct SessionInfo: Encodable {
        let user: String
        let roles: [String]
        let admin: Bool
        let csrf: String?

        init(_ caller: Caller, csrf: String?) {
            user = caller.user
            roles = caller.roles.sorted()
            admin = caller.isAdmin
            self.csrf = csrf
        }
    }

    /// Server-sent events from the log: one `execution` event per event of an execution the
    /// caller may READ, one `cluster` event per change of a server group it may READ. Each
    /// carries its log position as its id, so a reconnecting page (`Last-Event-ID`) resumes right
    /// after the last event it saw: nothing missed, nothing twice.
    func liveStream(_ request: Request, caller: Caller) async throws -> Response {
        let store = PostgresEventStore(client: client, logger: logger)
        var start: LogPosition
        var alreadyCommitted: Set<UUID> = []
        if let last = request.headers[HTTPField.Name("Last-Event-ID")!] {
            guard let position = LiveStream.position(last) else { throw APIError.badRequest("Last-Event-ID is a log position such as 1234@5678, not '\(last)'") }
            start = position
        } else {
            (start, alreadyCommitted) = try await store.liveStart()
        }
        let filter = LiveStream(store: repository.eventStore, caller: caller)
        // ?follow=false: what is there now, then the end (for tools, and to check the stream).
        let follow = request.uri.queryParameters["follow"] != "false"
        let begin = start, committed = alreadyCommitted
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-store", HTTPField.Name("X-Accel-Buffering")!: "no"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            var position = begin
            var skip = committed
            var quietSince = ContinuousClock.now
            try await writer.write(ByteBuffer(string: "retry: 1000\n: following the log after \(position)\n\n"))
            while !Task.isCancelled {
                let batch = try await store.readAll(after: position, limit: 200)
                var text = ""
                for event in batch {
                    position = event.logPosition
                    if skip.remove(event.id) != nil { continue }
                    if let message = try await filter.message(for: event) { text += message }
                }
                if !text.isEmpty {
                    try await writer.write(ByteBuffer(string: text))
                    quietSince = .now
                } else if ContinuousClock.now - quietSince > .seconds(15) {
                    // A comment now and then: a page that went away is noticed (the write fails).
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    quietSince = .now
                }
                if batch.count < 200 {
                    if !follow { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            try await writer.finish(nil)
        })
    }
}

/// What of the log one caller's live stream shows.
final class LiveStream: @unchecked Sendable {
    // @unchecked: used by one connection's loop only.
    let store: any EventStore
    let caller: Caller
    private var applications: [String: String] = [:]
    private var readable: [String: Bool] = [:]
    private var accounts: [String: Bool] = [:]
    /// Permissions are looked up again this often, so a READ taken away reaches open streams.
    private var checkedAt = ContinuousClock.now

    init(store: any EventStore, caller: Caller) {
        self.store = store
        self.caller = caller
    }

    static func position(_ text: String) -> LogPosition? {
        let parts = text.split(separator: "@")
        guard parts.count == 2, let position = Int64(parts[0]), let transaction = Int64(parts[1]), position >= 0, transaction >= 0 else { return nil }
        return LogPosition(transaction: transaction, position: position)
    }

    /// The SSE message for `event`, or nil when the caller may not see it or it is not shown live.
    func message(for event: RecordedEvent) async throws -> String? {
        if ContinuousClock.now - checkedAt > .seconds(30) {
            readable.removeAll()
            accounts.removeAll()
            checkedAt = .now
        }
        switch event.streamID.category {
        case "execution":
            let id = event.streamID.id
            guard let application = try await application(of: id, event), try await mayRead(application) else { return nil }
            return Self.format(event, "execution", [
                "executionId": .string(id), "application": .string(application), "type": .string(event.type), "version": .number(Double(event.streamVersion)),
            ])
        case "servergroup":
            let payload = try event.payload.decode(JSONValue.self)
            guard let account = payload["account"]?.stringValue, let name = payload["serverGroup"]?.stringValue ?? payload["name"]?.stringValue,
                  let application = payload["application"]?.stringValue ?? name.split(separator: "-").first.map(String.init),
                  try await mayRead(application), try await mayRead(account: account) else { return nil }
            return Self.format(event, "cluster", [
                "application": .string(application), "account": .string(account), "serverGroup": .string(name), "type": .string(event.type),
            ])
        default:
            return nil
        }
    }

    static func format(_ event: RecordedEvent, _ kind: String, _ data: [String: JSONValue]) -> String {
        var fields = data
        fields["position"] = .string(event.logPosition.description)
        let json = (try? JSONText(encoding: JSONValue.object(fields)).text) ?? "{}"
        return "id: \(event.logPosition)\nevent: \(kind)\ndata: \(json)\n\n"
    }

    func application(of execution: String, _ event: RecordedEvent) async throws -> String? {
        if let known = applications[execution] { return known }
        let first = event.streamVersion == 1 ? event : try await store.readStream(event.streamID, from: 1, direction: .forward, limit: 1).first
        guard let first else { return nil }
        let application = try first.payload.decode(JSONValue.self)["pipeline"]?["application"]?.stringValue ?? ""
        if applications.count > 10_000 { applications.removeAll() }
        applications[execution] = application
        return application
    }

    func mayRead(_ application: String) async throws -> Bool {
        if let known = readable[application] { return known }
        let may = try await ApplicationAccess(store: store).refusal(caller, .read, application: application.isEmpty ? nil : application) == nil
        readable[application] = may
        return may
    }

    func mayRead(account: String) async throws -> Bool {
        if let known = accounts[account] { return known }
        let may = try await CloudAccounts(store: store).account(account).map { CloudAccounts.refusal(caller, .read, account: $0) == nil } ?? caller.isAdmin
        accounts[account] = may
        return may
    }
}

/// The UI's files, read once from the module's resources.
struct UIAssets: Sendable {
    static let shared = UIAssets()
    let files: [String: (data: ByteBuffer, type: String)]

    init() {
        var files: [String: (ByteBuffer, String)] = [:]
        if let directory = Bundle.module.url(forResource: "UI", withExtension: nil),
           let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) {
            for name in names {
                guard let data = FileManager.default.contents(atPath: directory.appendingPathComponent(name).path) else { continue }
                files[name] = (ByteBuffer(bytes: data), Self.type(of: name))
            }
        }
        self.files = files
    }

    static func type(of name: String) -> String {
        switch (name as NSString).pathExtension {
        case "html": "text/html; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "svg": "image/svg+xml"
        case "json": "application/json"
        default: "application/octet-stream"
        }
    }

    func response(_ name: String) throws -> Response {
        guard let file = files[name] else { throw APIError.notFound("no UI file \(name)") }
        let caching = name == "index.html" ? "no-cache" : "max-age=300"
        return Response(status: .ok, headers: [.contentType: file.type, .cacheControl: caching], body: .init(byteBuffer: file.data))
    }
}
