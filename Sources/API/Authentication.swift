import Access
import Foundation
import HTTPTypes
import Hummingbird
import PipelineEngine

/// A request's context: Hummingbird's core plus who is calling.
public struct APIContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by ``AuthenticationMiddleware`` on every route but the health checks.
    public var caller: Caller?
    /// This request's id, answered in `X-Request-Id`: the causation id of what it appends.
    public var requestID = UUID().uuidString.lowercased()
    /// The client's `X-Correlation-Id`, when it sent a usable one.
    public var correlationID: String?

    /// Where the request came from (its peer's IP address), for limiting callers without a token.
    public var peer: String?

    /// The session token, when the browser's session cookie authenticated the request.
    public var session: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = source.channel.remoteAddress?.ipAddress
    }

    /// The authenticated caller (routes behind the middleware always have one).
    func requireCaller() throws -> Caller {
        guard let caller else { throw APIError.unauthenticated }
        return caller
    }
}

/// Every request but the health checks, `/metrics` and `/openapi.json` carries
/// `Authorization: Bearer <token>`: an API token, or a JWT from the configured OIDC issuer.
/// Without a valid one the answer is 401 and nothing runs.
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = APIContext
    let identities: Identities
    let oidc: OIDCVerifier?
    static let open: Set<String> = ["/health", "/ready", "/metrics", "/openapi.json"]

    /// The web UI's page and assets, and signing in (which takes its token in the body).
    static func isUIOpen(_ request: Request) -> Bool {
        let path = request.uri.path
        return path == "/" || path.hasPrefix("/ui/assets/") || (path == "/ui/session" && request.method == .post)
            || path == "/ui/sign-in-options" || path == "/ui/oidc/login" || path == "/ui/oidc/callback"
    }

    /// The paths trigger deliveries are posted to.
    static func isDelivery(_ path: String) -> Bool {
        path.hasPrefix("/webhooks/") || path.hasPrefix("/ci/builds/")
    }

    func handle(_ request: Request, context: APIContext, next: (Request, APIContext) async throws -> Response) async throws -> Response {
        var context = context
        if let given = request.headers[.correlationID], !given.isEmpty, given.count <= 200,
           given.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x21 && $0.value < 0x7F }) {
            context.correlationID = given
        }
        if Self.open.contains(request.uri.path) || Self.isUIOpen(request) { return try await next(request, context) }
        let header = request.headers[.authorization]
        if header == nil, let session = Sessions.token(in: request) {
            // The browser's session: anything but a read must prove it comes from Topsail's page.
            guard Sessions.isSafe(request.method) || Sessions.csrfHolds(request, token: session) else {
                throw APIError(.forbidden, "csrf", "a request made with the session cookie must carry the session's X-CSRF-Token (GET /ui/session gives it)")
            }
            guard let known = try await identities.caller(token: session) else {
                throw APIError(.unauthorized, "unauthenticated", "the session has ended (signed out or expired): sign in again")
            }
            context.caller = known
            context.session = session
            return try await next(request, context)
        }
        // Trigger deliveries come from senders that cannot send a token (``RouteAccess/trigger``).
        if header == nil, Self.isDelivery(request.uri.path) { return try await next(request, context) }
        guard let header, header.lowercased().hasPrefix("bearer ") else {
            throw APIError.unauthenticated
        }
        context.caller = try await caller(for: String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces))
        return try await next(request, context)
    }

    /// Who a bearer token (an API token, or a JWT from the OIDC issuer) stands for; 401 when nobody.
    func caller(for token: String) async throws -> Caller {
        if let oidc, OIDCVerifier.looksLikeJWT(token) {
            do {
                // Namespaced by where it comes from: an OIDC user called like a Topsail user or a
                // service account is someone else, and gets none of that account's roles or tokens.
                let (user, roles) = try await oidc.verify(token)
                return Caller(user: Caller.oidcPrefix + user, roles: roles)
            } catch let rejection as OIDCVerifier.Rejection {
                throw APIError(.unauthorized, "unauthenticated", rejection.description)
            }
        }
        guard let known = try await identities.caller(token: token) else {
            throw APIError(.unauthorized, "unauthenticated", "the API token is not valid (unknown, malformed or revoked)")
        }
        return known
    }
}

extension APIError {
    static let unauthenticated = APIError(
        .unauthorized, "unauthenticated", "an API token is required: send Authorization: Bearer <token> (topsail tokens create)")
}
