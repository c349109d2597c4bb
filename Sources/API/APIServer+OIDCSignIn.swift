import Access
import AsyncHTTPClient
import Crypto
import EventLog
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Signing in to the web UI at the OIDC provider (decision 0020): the authorization code flow
/// with PKCE. `/ui/oidc/login` sends the browser to the provider with a fresh state, nonce and
/// code challenge, kept meanwhile in a short-lived `HttpOnly` cookie; `/ui/oidc/callback` checks
/// the state, redeems the code with the verifier (and the client secret, if any) at the token
/// endpoint, verifies the id token like any bearer JWT (issuer, audience, signature, expiry) and
/// its nonce, and opens a browser session for that user with the roles the token carried.
extension APIServer {
    static let flowCookie = "topsail_oidc"

    func addOIDCSignInRoutes(to routes: Routes) {
        routes.on(.get, "/ui/sign-in-options", .open) { _, _ in
            try Self.json(["oidc": oidc?.configuration.signIn != nil] as [String: Bool])
        }
        routes.on(.get, "/ui/oidc/login", .open) { request, _ in
            guard let flow = oidc?.configuration.signIn else { throw Self.noSignIn }
            let state = Self.randomToken(), nonce = Self.randomToken(), verifier = Self.randomToken() + Self.randomToken()
            let challenge = Self.base64url(Data(SHA256.hash(data: Data(verifier.utf8))))
            var components = URLComponents(string: flow.authorizationURL)
            let given = components?.queryItems ?? []
            components?.queryItems = given + [
                URLQueryItem(name: "response_type", value: "code"), URLQueryItem(name: "client_id", value: flow.clientID),
                URLQueryItem(name: "redirect_uri", value: flow.redirectURL), URLQueryItem(name: "scope", value: "openid profile email"),
                URLQueryItem(name: "state", value: state), URLQueryItem(name: "nonce", value: nonce),
                URLQueryItem(name: "code_challenge", value: challenge), URLQueryItem(name: "code_challenge_method", value: "S256"),
            ]
            guard let location = components?.url?.absoluteString else { throw APIError(.internalServerError, "oidc", "the authorization URL is not a URL") }
            // SameSite=Lax: the provider's redirect back is a cross-site navigation, which a
            // Strict cookie would not ride along with. Ten minutes to sign in.
            let secure = Sessions.secure(request) ? "; Secure" : ""
            return Response(status: .found, headers: [
                .location: location, .cacheControl: "no-store",
                .setCookie: "\(Self.flowCookie)=\(state).\(nonce).\(verifier); Path=/ui/oidc; HttpOnly; SameSite=Lax; Max-Age=600\(secure)",
            ])
        }
        routes.on(.get, "/ui/oidc/callback", .open) { request, context in
            guard let flow = oidc?.configuration.signIn, let oidc else { throw Self.noSignIn }
            let query = request.uri.queryParameters
            if let error = query["error"] {
                throw APIError(.unauthorized, "unauthenticated", "the OIDC provider refused the sign-in: \(error) \(query["error_description"].map(String.init) ?? "")")
            }
            guard let code = query["code"], let state = query["state"] else {
                throw APIError.badRequest("the OIDC provider's answer has no code and state")
            }
            let kept = Sessions.cookie(Self.flowCookie, in: request)?.split(separator: ".").map(String.init) ?? []
            guard kept.count == 3, Sessions.equal(kept[0], String(state)) else {
                throw APIError.badRequest("this sign-in was not started here, or took longer than 10 minutes (its state does not match): sign in again")
            }
            let idToken = try await Self.redeem(code: String(code), verifier: kept[2], flow: flow)
            let (user, roles, claims): (String, Set<String>, [String: JSONValue])
            do {
                (user, roles, claims) = try await oidc.verifyClaims(idToken)
            } catch let rejection as OIDCVerifier.Rejection {
                throw APIError(.unauthorized, "unauthenticated", rejection.description.replacingOccurrences(of: "bearer JWT", with: "id token"))
            }
            guard let nonce = claims["nonce"]?.stringValue, Sessions.equal(nonce, kept[1]) else {
                throw APIError(.unauthorized, "unauthenticated", "the id token's nonce is not this sign-in's: sign in again")
            }
            let caller = Caller(user: Caller.oidcPrefix + user, roles: roles)
            let session = try await Identities(store: repository.eventStore).issueSession(for: caller, lifetime: Sessions.lifetime, metadata: Self.metadata(context))
            var response = Response(status: .found, headers: [.location: "/", .cacheControl: "no-store"])
            response.headers[values: .setCookie] = [
                Sessions.setCookie(session.token, request),
                "\(Self.flowCookie)=; Path=/ui/oidc; HttpOnly; SameSite=Lax; Max-Age=0",
            ]
            return response
        }
    }

    static let noSignIn = APIError(.notFound, "not_found",
        "signing in at an OIDC provider is not configured: start Topsail with --oidc-authorization-url, --oidc-token-url and --public-url (and the other --oidc-* options)")

    /// The id token the provider gives for `code`.
    static func redeem(code: String, verifier: String, flow: OIDCVerifier.Configuration.SignIn) async throws -> String {
        var form = URLComponents()
        form.queryItems = [
            URLQueryItem(name: "grant_type", value: "authorization_code"), URLQueryItem(name: "code", value: code),
            URLQueryItem(name: "redirect_uri", value: flow.redirectURL), URLQueryItem(name: "client_id", value: flow.clientID),
            URLQueryItem(name: "code_verifier", value: verifier),
        ] + (flow.clientSecret.map { [URLQueryItem(name: "client_secret", value: $0)] } ?? [])
        var request = HTTPClientRequest(url: flow.tokenURL)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        // Form encoding: URLComponents leaves '+' alone, which a form reads as a space.
        request.body = .bytes(ByteBuffer(string: (form.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B")))
        let body: JSONValue
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            let bytes = try await response.body.collect(upTo: 1 << 20)
            body = (try? JSONText(String(buffer: bytes)).decode(JSONValue.self)) ?? .null
            guard response.status == .ok else {
                throw APIError(.unauthorized, "unauthenticated",
                               "the OIDC provider did not redeem the code (\(response.status.code)): \(body["error"]?.stringValue ?? "") \(body["error_description"]?.stringValue ?? "")")
            }
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(.badGateway, "oidc_unreachable", "the OIDC provider's token endpoint did not answer: \(error)")
        }
        guard let token = body["id_token"]?.stringValue else { throw APIError(.unauthorized, "unauthenticated", "the OIDC provider gave no id token") }
        return token
    }

    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return base64url(Data((0..<24).map { _ in UInt8.random(in: 0...255, using: &generator) }))
    }

    static func base64url(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
