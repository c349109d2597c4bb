import ArgumentParser
import AsyncHTTPClient
import CLISupport
import EventLog
import Foundation
import NIOCore
import NIOHTTP1

/// Where a command reaches Topsail when it goes through the HTTP API: the API's address and a
/// token. Without an address the command works on the database directly, as an operator.
struct APIClientOptions: ParsableArguments {
    @Option(name: .customLong("api"), help: ArgumentHelp(
        "Go through the HTTP API at this address, e.g. http://127.0.0.1:8084 (default: $TOPSAIL_API_URL); without it the command works on the database directly.",
        valueName: "url"))
    var apiURL: String?

    @Option(help: "The API token (default: $TOPSAIL_TOKEN).")
    var token: String?

    /// The API to call, or nil when the command should use the database.
    func remote() throws -> RemoteAPI? {
        guard let url = apiURL ?? environment("TOPSAIL_API_URL") else { return nil }
        guard let base = URL(string: url), base.scheme == "http" || base.scheme == "https", base.host != nil else {
            throw CLIError("--api must be an http(s) address such as http://127.0.0.1:8084, got '\(url)'")
        }
        guard let token = token ?? environment("TOPSAIL_TOKEN") else {
            throw CLIError("the API needs a token: pass --token or set TOPSAIL_TOKEN (topsail tokens create, or the one ops/run printed)")
        }
        return RemoteAPI(base: url.hasSuffix("/") ? String(url.dropLast()) : url, token: token)
    }
}

/// Topsail's HTTP API as the CLI calls it: JSON in and out, and the API's refusals (401, 403,
/// 404, 409 …) turned into one-line errors that say what the server said.
struct RemoteAPI: Sendable {
    let base: String
    let token: String

    /// Calls `method path` and returns the JSON answer of a 2xx; anything else throws.
    func call(_ method: HTTPMethod, _ path: String, body: JSONValue? = nil) async throws -> JSONValue {
        let (status, json) = try await send(method, path, body: body)
        guard (200..<300).contains(status) else { throw Self.refusal(json, status: status, method, path) }
        return json
    }

    /// As ``call(_:_:body:)``, with nil when the server answers 404 (no such thing).
    func callIfFound(_ method: HTTPMethod, _ path: String, body: JSONValue? = nil) async throws -> JSONValue? {
        let (status, json) = try await send(method, path, body: body)
        if status == 404 { return nil }
        guard (200..<300).contains(status) else { throw Self.refusal(json, status: status, method, path) }
        return json
    }

    private static func refusal(_ json: JSONValue, status: Int, _ method: HTTPMethod, _ path: String) -> CLIError {
        CLIError("\(json["message"]?.stringValue ?? json.stringValue ?? "no message") (HTTP \(status) from \(method) \(path))")
    }

    private func send(_ method: HTTPMethod, _ path: String, body: JSONValue?) async throws -> (status: Int, json: JSONValue) {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        }
        let response: HTTPClientResponse
        let data: ByteBuffer
        // One client per call, failing at once when nothing listens (the default retries
        // connecting until the request's deadline).
        var configuration = HTTPClient.Configuration(timeout: .init(connect: .seconds(5)))
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            response = try await client.execute(request, timeout: .seconds(30))
            data = try await response.body.collect(upTo: 16 << 20)
            try await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw CLIError("cannot reach the API at \(base) (\(error)); is topsail running there?")
        }
        let json = (try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: data))) ?? .string(String(buffer: data))
        return (Int(response.status.code), json)
    }

    /// A path segment or query value, percent-encoded.
    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }
}
