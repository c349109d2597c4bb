import Access
import Crypto
import EventLog
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Pipelines
import Testing

/// The web UI against a real `topsail all`: sessions and CSRF through HTTP, the live stream's
/// resumption and filtering, and the pages driven in Debian's headless chromium.
@Suite("Web UI: sessions, the live stream, and the pages in a real browser", .serialized, .timeLimit(.minutes(5)))
struct UITests {
    typealias Engine = EngineTests.Engine

    /// An application `shop` that `readers` may only READ, and its pipeline `deploy`: a manual
    /// judgment, then a wait.
    static func setUp(_ db: TestDatabase, _ engine: Engine) async throws -> (admin: String, reader: String) {
        let identities = Identities(store: db.store)
        let metadata = EventMetadata(source: "test")
        let admin = try await identities.issue(user: "ada", name: "ui", roles: ["admin"], metadata: metadata).token
        let reader = try await identities.issue(user: "rex", name: "ui", roles: ["readers"], metadata: metadata).token
        try await APIContractTests.answering(engine)
        let app = try await APIContractTests.call("POST", engine.api + "/applications",
                                                  #"{"name": "shop", "email": "shop@example.com", "permissions": {"READ": ["readers"], "WRITE": ["owners"], "EXECUTE": ["owners"]}}"#, admin)
        #expect(app.status == 200, "\(app.json)")
        let pipeline = try await APIContractTests.call("POST", engine.api + "/pipelines", #"""
            {"id": "deploy-1", "application": "shop", "name": "deploy", "limitConcurrent": false,
             "parameterConfig": [{"name": "version", "required": true}, {"name": "region", "hasOptions": true, "options": [{"value": "eu"}, {"value": "us"}], "default": "eu"}],
             "stages": [{"refId": "approve", "type": "manualJudgment", "name": "Approve ${parameters.version}", "judgmentInputs": [{"value": "ship"}, {"value": "hold"}]},
                        {"refId": "after", "type": "wait", "name": "Settle", "waitTime": 1, "requisiteStageRefIds": ["approve"]}]}
            """#, admin)
        #expect(pipeline.status == 200, "\(pipeline.json)")
        return (admin, reader)
    }

    @Test("sessions: a token becomes an HttpOnly SameSite=Strict cookie; a change made with the cookie needs the session's CSRF token; signing out revokes it; a bad token is refused")
    func sessions() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let (admin, _) = try await Self.setUp(db, engine)
            let bad = try await APIContractTests.call("POST", engine.api + "/ui/session", #"{"token": "tsk_nope_nope"}"#, nil)
            #expect(bad.status == 401 && bad.headers["set-cookie"] == nil, "\(bad.json)")
            let empty = try await APIContractTests.call("POST", engine.api + "/ui/session", "{}", nil)
            #expect(empty.status == 400 && empty.json["message"]?.stringValue?.contains("token") == true, "\(empty.json)")

            let signedIn = try await APIContractTests.call("POST", engine.api + "/ui/session", #"{"token": "\#(admin)"}"#, nil)
            let cookie = try #require(signedIn.headers["set-cookie"], "\(signedIn.headers)")
            #expect(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "\(cookie)")
            let session = try #require(cookie.split(separator: ";").first.map(String.init))
            let csrf = try #require(signedIn.json["csrf"]?.stringValue)
            #expect(signedIn.json["user"] == "ada" && !cookie.contains(admin), "the session is a token of its own")
            #expect(signedIn.headers["content-security-policy"]?.contains("script-src 'self'") == true)

            let read = try await APIContractTests.call("GET", engine.api + "/ui/session", nil, nil, headers: ["Cookie": session])
            #expect(read.status == 200 && read.json["csrf"]?.stringValue == csrf, "\(read.json)")
            let withoutCSRF = try await APIContractTests.call("POST", engine.api + "/pipelines/shop/deploy", #"{"parameters": {"version": "1"}}"#, nil, headers: ["Cookie": session])
            #expect(withoutCSRF.status == 403 && withoutCSRF.json["error"] == "csrf", "\(withoutCSRF.json)")
            let wrongCSRF = try await APIContractTests.call("POST", engine.api + "/pipelines/shop/deploy", #"{"parameters": {"version": "1"}}"#, nil,
                                                            headers: ["Cookie": session, "X-CSRF-Token": String(csrf.reversed())])
            #expect(wrongCSRF.status == 403 && wrongCSRF.json["error"] == "csrf", "\(wrongCSRF.json)")
            let started = try await APIContractTests.call("POST", engine.api + "/pipelines/shop/deploy", #"{"parameters": {"version": "1"}}"#, nil,
                                                          headers: ["Cookie": session, "X-CSRF-Token": csrf])
            #expect(started.status == 202, "\(started.json)")
            // Acting through the session records the user, as a token would.
            let id = try #require(started.json["id"]?.stringValue)
            let view = try await APIContractTests.call("GET", engine.api + "/pipelines/\(id)", nil, nil, headers: ["Cookie": session])
            #expect(view.json["trigger"]?["user"] == "ada", "\(view.json["trigger"] ?? .null)")

            let out = try await APIContractTests.call("DELETE", engine.api + "/ui/session", nil, nil, headers: ["Cookie": session, "X-CSRF-Token": csrf])
            #expect(out.status == 200 && out.headers["set-cookie"]?.contains("Max-Age=0") == true, "\(out.json)")
            let after = try await APIContractTests.call("GET", engine.api + "/ui/session", nil, nil, headers: ["Cookie": session])
            #expect(after.status == 401, "a signed-out session still works: \(after.json)")
            let page = try await APIContractTests.call("GET", engine.api + "/", nil, nil)
            #expect(page.status == 200 && page.headers["content-type"]?.hasPrefix("text/html") == true)
            #expect(page.headers["x-frame-options"] == "DENY" && page.headers["x-content-type-options"] == "nosniff")
        }
    }

    @Test("the live stream: events of executions the caller may READ, each with its log position as id; resuming after an id gives exactly the events after it")
    func liveStream() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let (admin, reader) = try await Self.setUp(db, engine)
            let start = try await db.store.readAll(after: .start, limit: 100_000).last?.logPosition.description ?? "0@0"
            // One execution the reader may see, one of an application it may not.
            let shop = try await APIContractTests.call("POST", engine.api + "/pipelines/shop/deploy", #"{"parameters": {"version": "1"}}"#, admin)
            let shopID = try #require(shop.json["id"]?.stringValue)
            _ = try await APIContractTests.call("POST", engine.api + "/applications", #"{"name": "secret", "permissions": {"READ": ["owners"], "WRITE": ["owners"]}}"#, admin)
            let hidden = try await engine.run(["application": "secret", "name": "hidden", "limitConcurrent": false, "stages": [["refId": "1", "type": "noop"]]])
            _ = try await engine.finished(hidden)
            try await engine.until("the judgment to wait") { try await engine.repository.load(shopID).stage("approve").status == .running }

            func read(_ token: String, after: String) async throws -> [(id: String, kind: String, data: JSONValue)] {
                let reply = try await APIContractTests.call("GET", engine.api + "/ui/stream?follow=false", nil, token, headers: ["Last-Event-ID": after])
                #expect(reply.status == 200 && reply.headers["content-type"] == "text/event-stream", "\(reply.status) \(reply.json)")
                return Self.messages(reply.json.stringValue ?? "")
            }
            let all = try await read(admin, after: start)
            let seen = try await read(reader, after: start)
            #expect(all.contains { $0.data["executionId"]?.stringValue == hidden } && all.contains { $0.data["executionId"]?.stringValue == shopID })
            #expect(!seen.isEmpty && seen.allSatisfy { $0.data["application"] == "shop" }, "the reader saw \(seen.map(\.data))")
            #expect(seen.map(\.kind).allSatisfy { $0 == "execution" })
            // Resuming after the third event gives the rest, nothing twice and nothing missed.
            let middle = seen[2].id
            let rest = try await read(reader, after: middle)
            #expect(rest.map(\.id) == Array(seen.dropFirst(3).map(\.id)), "resumed \(rest.map(\.id)) after \(middle) of \(seen.map(\.id))")
            let bad = try await APIContractTests.call("GET", engine.api + "/ui/stream?follow=false", nil, reader, headers: ["Last-Event-ID": "yesterday"])
            #expect(bad.status == 400 && bad.json["message"]?.stringValue?.contains("Last-Event-ID") == true, "\(bad.json)")
            // Replay: the execution as it stood after its first event.
            let first = try await APIContractTests.call("GET", engine.api + "/pipelines/\(shopID)?version=1", nil, reader)
            #expect(first.json["status"] == "NOT_STARTED" && first.json["version"] == 1, "\(first.json)")
        }
    }

    static func messages(_ text: String) -> [(id: String, kind: String, data: JSONValue)] {
        text.components(separatedBy: "\n\n").compactMap { block in
            var id = "", kind = "", data = ""
            for line in block.split(separator: "\n") {
                if line.hasPrefix("id: ") { id = String(line.dropFirst(4)) }
                if line.hasPrefix("event: ") { kind = String(line.dropFirst(7)) }
                if line.hasPrefix("data: ") { data = String(line.dropFirst(6)) }
            }
            guard !id.isEmpty, let json = try? JSONText(data).decode(JSONValue.self) else { return nil }
            return (id, kind, json)
        }
    }

    @Test("in headless chromium: sign in, trigger with parameters, watch the execution live, approve the judgment by clicking, replay, validation errors at their field in JSON and YAML, a YAML save, history diff, a stale save refused, audit, sign out; a READ-only user gets no buttons and a forged request is refused; axe-core finds no serious violations")
    func browser() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let (admin, reader) = try await Self.setUp(db, engine)
            let screenshots = TestEnvironment.packageRoot.appendingPathComponent(".topsail/screenshots")
            try FileManager.default.createDirectory(at: screenshots, withIntermediateDirectories: true)
            let script = TestEnvironment.packageRoot.appendingPathComponent("Tests/Browser/ui_browser_test.py")
            let outcome = try await CLITests.run(
                [script.path, "--base", engine.api, "--admin", admin, "--reader", reader, "--screenshots", screenshots.path],
                executable: TestEnvironment.packageRoot.appendingPathComponent(".topsail/venv/bin/python"))
            #expect(outcome.status == 0, "the browser checks:\n\(outcome.stdout)\n\(outcome.stderr.suffix(3000))")
            #expect(outcome.stdout.contains("\"failures\": []"), "\(outcome.stdout)")
            print(outcome.stdout.split(separator: "\n").filter { $0.hasPrefix("ok") || $0.hasPrefix("FAIL") }.joined(separator: "\n"))
        }
    }
}

@Suite("Web UI: signing in at the OIDC provider", .serialized, .timeLimit(.minutes(5)))
struct OIDCSignInTests {
    typealias Engine = EngineTests.Engine

    @Test("the authorization code flow with PKCE: login sends the browser to the provider with state, nonce and an S256 challenge; the callback redeems the code with the verifier and the client secret, checks the id token and its nonce, and opens a session with the token's roles; a foreign state, a wrong nonce or a refused code open nothing")
    func authorizationCodeFlow() async throws {
        let issuer = try TestIssuer()
        defer { issuer.remove() }
        try await ScriptedHTTPServer.with { provider in
            try await TestDatabase.with { db in
                let secret = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("secret"))
                try "s3cret+/=".write(to: secret, atomically: true, encoding: .utf8)
                defer { try? FileManager.default.removeItem(at: secret) }
                let port = try PrivateBroker.freePort()
                let engine = try Engine(db, arguments: [
                    "--oidc-issuer", issuer.issuer, "--oidc-audience", "topsail", "--oidc-jwks", issuer.keys.path,
                    "--oidc-authorization-url", provider.base + "/authorize", "--oidc-token-url", provider.base + "/token",
                    "--oidc-client-secret-file", secret.path, "--public-url", "http://127.0.0.1:\(port)",
                ])
                defer { engine.process.terminate() }
                try await APIContractTests.answering(engine)
                let options = try await APIContractTests.call("GET", engine.api + "/ui/sign-in-options", nil, nil)
                #expect(options.json["oidc"] == true, "\(options.json)")

                // Login: a redirect to the provider, and the flow's cookie.
                func login() async throws -> (query: [String: String], cookie: String) {
                    let reply = try await Self.get(engine.api + "/ui/oidc/login")
                    #expect(reply.status == 302)
                    let location = try #require(reply.headers["location"])
                    #expect(location.hasPrefix(provider.base + "/authorize?"), "\(location)")
                    let items = URLComponents(string: location)?.queryItems ?? []
                    let query = Dictionary(items.map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
                    let cookie = try #require(reply.headers["set-cookie"]?.split(separator: ";").first.map(String.init))
                    #expect(reply.headers["set-cookie"]?.contains("HttpOnly") == true && reply.headers["set-cookie"]?.contains("SameSite=Lax") == true)
                    return (query, cookie)
                }
                let (query, cookie) = try await login()
                #expect(query["client_id"] == "topsail" && query["response_type"] == "code" && query["code_challenge_method"] == "S256"
                        && query["redirect_uri"] == "http://127.0.0.1:\(port)/ui/oidc/callback" && query["scope"]?.contains("openid") == true, "\(query)")
                let state = try #require(query["state"]), nonce = try #require(query["nonce"]), challenge = try #require(query["code_challenge"])

                // The provider sends the browser back with a code; the token endpoint answers with an id token.
                provider.on("/token", .json(#"{"token_type": "Bearer", "id_token": "\#(try issuer.jwt(["preferred_username": "jo", "groups": ["shop-readers"], "nonce": .string(nonce)]))"}"#))
                let back = try await Self.get(engine.api + "/ui/oidc/callback?code=c-1&state=\(state)", cookie: cookie)
                #expect(back.status == 302 && back.headers["location"] == "/", "\(back.status) \(back.json)")
                let session = try #require(back.headers["set-cookie"].flatMap { header in
                    header.components(separatedBy: ", ").first { $0.hasPrefix("topsail_session=") }?.split(separator: ";").first.map(String.init)
                }, "\(back.headers)")
                let redeemed = try #require(provider.received("/token").last)
                let form = Dictionary((URLComponents(string: "?" + redeemed.body)?.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
                let verifier = try #require(form["code_verifier"])
                #expect(TestIssuer.base64url(Data(SHA256.hash(data: Data(verifier.utf8)))) == challenge, "the verifier does not match the challenge")
                #expect(form["code"] == "c-1" && form["client_secret"] == "s3cret+/=" && form["grant_type"] == "authorization_code", "\(form)")
                let me = try await APIContractTests.call("GET", engine.api + "/ui/session", nil, nil, headers: ["Cookie": session])
                #expect(me.json["user"] == "oidc:jo" && me.json["roles"] == ["shop-readers"] && me.json["csrf"]?.stringValue != nil, "\(me.json)")

                // Not this sign-in's state: refused, no session.
                let (_, other) = try await login()
                let foreign = try await Self.get(engine.api + "/ui/oidc/callback?code=c-2&state=someone-elses", cookie: other)
                #expect(foreign.status == 400 && foreign.headers["set-cookie"] == nil, "\(foreign.json)")
                // A token for another sign-in (wrong nonce): refused.
                let (again, third) = try await login()
                provider.on("/token", .json(#"{"id_token": "\#(try issuer.jwt(["preferred_username": "jo", "nonce": "replayed"]))"}"#))
                let replayed = try await Self.get(engine.api + "/ui/oidc/callback?code=c-3&state=\(again["state"] ?? "")", cookie: third)
                #expect(replayed.status == 401 && replayed.json["message"]?.stringValue?.contains("nonce") == true, "\(replayed.json)")
                // The provider refuses the code.
                let (fourth, cookie4) = try await login()
                provider.on("/token", .json(#"{"error": "invalid_grant"}"#, status: 400))
                let refused = try await Self.get(engine.api + "/ui/oidc/callback?code=c-4&state=\(fourth["state"] ?? "")", cookie: cookie4)
                #expect(refused.status == 401 && refused.json["message"]?.stringValue?.contains("invalid_grant") == true, "\(refused.json)")
            }
        }
    }

    /// A GET that does not follow redirects.
    static func get(_ url: String, cookie: String? = nil) async throws -> APITests.Reply {
        final class NoRedirects: NSObject, URLSessionTaskDelegate {
            func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                            newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) { completionHandler(nil) }
        }
        var request = URLRequest(url: URL(string: url)!)
        request.httpShouldHandleCookies = false
        if let cookie { request.setValue(cookie, forHTTPHeaderField: "Cookie") }
        let session = URLSession(configuration: APITests.cookieless, delegate: NoRedirects(), delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        let (data, response) = try await session.data(for: request)
        let json = (try? JSONDecoder().decode(JSONValue.self, from: data)) ?? .string(String(decoding: data, as: UTF8.self))
        let http = response as? HTTPURLResponse
        var headers: [String: String] = [:]
        for (name, value) in http?.allHeaderFields ?? [:] { headers[String(describing: name).lowercased()] = String(describing: value) }
        return APITests.Reply(status: http?.statusCode ?? 0, json: json, headers: headers)
    }
}
