import Access
import Crypto
import Foundation
import HTTPTypes
import Hummingbird

/// Browser sessions (decision 0020). Signing in exchanges an API token (or a JWT from the OIDC
/// issuer) for a session token of the same caller, kept in an `HttpOnly`, `SameSite=Strict`
/// cookie; signing out revokes it. A request the cookie authenticates that changes anything must
/// carry `X-CSRF-Token`: the HMAC of the session token, which the page learns from
/// `GET /ui/session` and a page of another site cannot compute (nor read, nor send with the
/// cookie, given `SameSite=Strict`).
enum Sessions {
    static let cookieName = "topsail_session"
    static let csrfHeader = HTTPField.Name("X-CSRF-Token")!
    static let lifetime: Duration = .seconds(12 * 3600)

    /// The session token in the request's cookies, if any.
    static func token(in request: Request) -> String? {
        cookie(cookieName, in: request)
    }

    /// The value of the cookie `name` in the request, if it has a non-empty one.
    static func cookie(_ name: String, in request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == name else { continue }
                let value = parts[1].trimmingCharacters(in: .whitespaces)
                if !value.isEmpty { return value }
            }
        }
        return nil
    }

    /// Compares two secrets in time that does not depend on where they differ.
    static func equal(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        return x.count == y.count && zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    /// The CSRF token that goes with a session token.
    static func csrf(for token: String) -> String {
        HMAC<SHA256>.authenticationCode(for: Data("topsail-csrf".utf8), using: SymmetricKey(data: Data(token.utf8)))
            .map { String(format: "%02x", $0) }.joined()
    }

    /// Whether the request's `X-CSRF-Token` is the session's.
    static func csrfHolds(_ request: Request, token: String) -> Bool {
        guard let given = request.headers[csrfHeader] else { return false }
        return equal(given, csrf(for: token))
    }

    /// The session token's id (its stream), to revoke it.
    static func tokenID(_ token: String) -> String? {
        let parts = token.split(separator: "_", maxSplits: 2, omittingEmptySubsequences: false)
        return parts.count == 3 ? String(parts[1]) : nil
    }

    /// `Set-Cookie` for the session (`Secure` when the request came over HTTPS, directly or
    /// through a proxy that says so).
    static func setCookie(_ token: String, _ request: Request) -> String {
        "\(cookieName)=\(token); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(lifetime.components.seconds)\(secure(request) ? "; Secure" : "")"
    }

    static func clearCookie(_ request: Request) -> String {
        "\(cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0\(secure(request) ? "; Secure" : "")"
    }

    static func secure(_ request: Request) -> Bool {
        request.uri.scheme?.rawValue == "https" || request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
    }

    /// Methods that change nothing, and so need no CSRF token.
    static func isSafe(_ method: HTTPRequest.Method) -> Bool {
        method == .get || method == .head || method == .options
    }
}

/// Headers on every answer: a strict Content-Security-Policy (the UI's scripts and styles are
/// files of its own; nothing inline, nothing from elsewhere), no framing, no sniffing, no referrer.
struct SecurityHeadersMiddleware: RouterMiddleware {
    typealias Context = APIContext
    static let policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    func handle(_ request: Request, context: APIContext, next: (Request, APIContext) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[HTTPField.Name("Content-Security-Policy")!] = Self.policy
        response.headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        response.headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        response.headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        return response
    }
}
