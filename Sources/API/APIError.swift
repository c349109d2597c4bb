import Foundation
import HTTPTypes
import Hummingbird
import Logging
import PostgresEventStore

/// A refusal the API explains: the status, a short machine-readable error, and a message a
/// person can act on. Rendered as `{"error", "message", "status"}`.
public struct APIError: Error, Sendable {
    public let status: HTTPResponse.Status
    public let error: String
    public let message: String
    /// Where the request went wrong, for invalid pipeline JSON: `[{path, stage, message}]`.
    public let problems: [Problem]?

    public struct Problem: Encodable, Sendable {
        let path: String
        let stage: String?
        let message: String
    }

    public init(_ status: HTTPResponse.Status, _ error: String, _ message: String, problems: [Problem]? = nil) {
        self.status = status
        self.error = error
        self.message = message
        self.problems = problems
    }

    static func notFound(_ message: String) -> APIError { APIError(.notFound, "not_found", message) }
    static func badRequest(_ message: String) -> APIError { APIError(.badRequest, "bad_request", message) }
    static func conflict(_ message: String) -> APIError { APIError(.conflict, "conflict", message) }

    private struct Body: Encodable {
        let error: String
        let message: String
        let status: Int
        let problems: [Problem]?
    }

    func response() -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body = (try? encoder.encode(Body(error: error, message: message, status: Int(status.code), problems: problems))) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// Turns every failure into a JSON error body: the API's own refusals as they are, Hummingbird's
/// (unknown route, body too large) with their status, PostgreSQL being away as 503, and anything
/// else as a 500 that names no internals (the detail goes to the log).
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = APIContext
    let logger: Logger

    /// Every answer names its request (`X-Request-Id`), the causation id of what it appended.
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = await respond(request, context: context, next: next)
        response.headers[.requestID] = context.requestID
        return response
    }

    private func respond(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async -> Response {
        // PostgreSQL's text cannot hold U+0000: refuse it in a path or query before it reaches a query.
        if request.uri.description.range(of: "%00", options: .caseInsensitive) != nil {
            return APIError.badRequest("the path and query may not contain the NUL character (%00)").response()
        }
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return error.response()
        } catch let error as HTTPError {
            let message = error.body ?? (error.status == .notFound ? "no such resource: \(request.method) \(request.uri.path)" : error.status.reasonPhrase)
            return APIError(error.status, Self.code(error.status), message).response()
        } catch let error as DatabaseError where error.isRetriable {
            return APIError(.serviceUnavailable, "unavailable", "PostgreSQL does not answer; try again shortly").response()
        } catch {
            logger.error("request failed", metadata: ["http.method": "\(request.method)", "http.path": "\(request.uri.path)", "error": "\(error)"])
            return APIError(.internalServerError, "internal", "the request failed inside Topsail; the server log has the detail").response()
        }
    }

    static func code(_ status: HTTPResponse.Status) -> String {
        switch status.code {
        case 400: "bad_request"
        case 401: "unauthenticated"
        case 403: "forbidden"
        case 404: "not_found"
        case 405: "method_not_allowed"
        case 409: "conflict"
        case 413: "payload_too_large"
        case 429: "too_many_requests"
        case 503: "unavailable"
        default: "error"
        }
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-Id")!
    static let correlationID = Self("X-Correlation-Id")!
}
