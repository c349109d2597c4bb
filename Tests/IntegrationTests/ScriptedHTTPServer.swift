import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A real HTTP server on 127.0.0.1 whose answers a test scripts per path; it records every
/// request it gets.
final class ScriptedHTTPServer: Sendable {
    struct Reply: Sendable {
        var status: Int
        var body: String
        var headers: [String: String] = [:]

        static func json(_ body: String, status: Int = 200) -> Reply { Reply(status: status, body: body, headers: ["Content-Type": "application/json"]) }
    }

    struct Received: Sendable {
        var method: String
        var path: String
        var headers: [String: String]
        var body: String
    }

    private struct State {
        var script: [String: [Reply]] = [:]
        var received: [Received] = []
    }

    let port: Int
    private let state = Mutex(State())
    private let group: ServiceGroup

    var base: String { "http://127.0.0.1:\(port)" }

    private init(port: Int, group: ServiceGroup) {
        self.port = port
        self.group = group
    }

    /// Starts a server, runs `body`, stops the server.
    static func with<T: Sendable>(_ body: (ScriptedHTTPServer) async throws -> T) async throws -> T {
        let port = try PrivateBroker.freePort()
        let box = Mutex<ScriptedHTTPServer?>(nil)
        let responder = CallbackResponder<BasicRequestContext> { request, _ in
            guard let server = box.withLock({ $0 }) else { return Response(status: .serviceUnavailable) }
            return try await server.respond(to: request)
        }
        let app = Application(responder: responder, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: TestEnvironment.logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: TestEnvironment.logger))
        let server = ScriptedHTTPServer(port: port, group: group)
        box.withLock { $0 = server }
        let running = Task { try await group.run() }
        defer { running.cancel() }
        try await eventually(timeout: .seconds(10), "the test HTTP server to listen") { PrivateBroker.answers(port: port) }
        do {
            let result = try await body(server)
            await group.triggerGracefulShutdown()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
    }

    /// Answers requests to `path` with `replies` in order; the last one repeats.
    func on(_ path: String, _ replies: Reply...) {
        state.withLock { $0.script[path] = replies }
    }

    func received(_ path: String) -> [Received] {
        state.withLock { $0.received.filter { $0.path == path } }
    }

    private func respond(to request: Request) async throws -> Response {
        let bytes = try await request.body.collect(upTo: 1 << 20)
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        let path = request.uri.path
        let reply = state.withLock { state -> Reply? in
            state.received.append(Received(method: request.method.rawValue, path: path, headers: headers, body: String(buffer: bytes)))
            guard var replies = state.script[path], let first = replies.first else { return nil }
            if replies.count > 1 { replies.removeFirst() }
            state.script[path] = replies
            return first
        }
        guard let reply else { return Response(status: .notFound) }
        var fields = HTTPFields()
        for (name, value) in reply.headers {
            if let name = HTTPFields.Element.Name(name) { fields[name] = value }
        }
        return Response(status: .init(code: reply.status), headers: fields, body: .init(byteBuffer: ByteBuffer(string: reply.body)))
    }
}
