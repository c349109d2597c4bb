import Access
import EventLog
import Foundation
import JWTKit
import PipelineEngine

/// Accepts bearer JWTs from one OIDC issuer: signed by one of its keys (a JWKS document, as the
/// issuer publishes at its `jwks_uri`), for this audience, from this issuer, and current (`exp`,
/// `nbf`). The caller is the `userClaim` (falling back to `sub`); its roles are the `rolesClaim`
/// (a list of names, or one) plus any Topsail gives that user (`topsail tokens create --role`).
public struct OIDCVerifier: Sendable {
    public struct Configuration: Sendable {
        public var issuer: String
        public var audience: String
        /// The issuer's keys: a JSON Web Key Set document.
        public var jwks: String
        public var userClaim: String
        public var rolesClaim: String
        /// Signing in to the web UI at the provider (the authorization code flow with PKCE), when
        /// set; bearer JWTs are accepted either way.
        public var signIn: SignIn?

        /// The provider's endpoints and Topsail's registration with it.
        public struct SignIn: Sendable {
            public var authorizationURL: String
            public var tokenURL: String
            /// Topsail's client id at the provider (the audience of its id tokens).
            public var clientID: String
            /// Nil for a public client (PKCE alone).
            public var clientSecret: String?
            /// Where the provider sends the browser back: `<public URL>/ui/oidc/callback`.
            public var redirectURL: String

            public init(authorizationURL: String, tokenURL: String, clientID: String, clientSecret: String?, redirectURL: String) {
                self.authorizationURL = authorizationURL
                self.tokenURL = tokenURL
                self.clientID = clientID
                self.clientSecret = clientSecret
                self.redirectURL = redirectURL
            }
        }

        public init(issuer: String, audience: String, jwks: String, userClaim: String = "preferred_username", rolesClaim: String = "groups") {
            self.issuer = issuer
            self.audience = audience
            self.jwks = jwks
            self.userClaim = userClaim
            self.rolesClaim = rolesClaim
        }
    }

    /// Why a JWT was not accepted, safe to tell the client.
    struct Rejection: Error, CustomStringConvertible {
        let description: String
    }

    let configuration: Configuration
    private let keys: JWTKeyCollection

    public init(_ configuration: Configuration) async throws {
        self.configuration = configuration
        keys = JWTKeyCollection()
        do {
            try await keys.add(jwksJSON: configuration.jwks)
        } catch {
            throw Rejection(description: "the OIDC keys are not a usable JSON Web Key Set: \(error)")
        }
    }

    /// Whether `token` has the shape of a JWT (three base64url parts), not of an API token.
    static func looksLikeJWT(_ token: String) -> Bool {
        token.split(separator: ".", omittingEmptySubsequences: false).count == 3 && !token.hasPrefix(Identities.tokenPrefix)
    }

    /// The user and the roles the token names; throws a ``Rejection`` saying what is wrong.
    func verify(_ token: String) async throws -> (user: String, roles: Set<String>) {
        let (user, roles, _) = try await verifyClaims(token)
        return (user, roles)
    }

    /// The user, roles and every claim of a valid JWT (the sign-in flow checks its nonce).
    func verifyClaims(_ token: String) async throws -> (user: String, roles: Set<String>, claims: [String: JSONValue]) {
        let claims: Claims
        do {
            claims = try await keys.verify(token, as: Claims.self)
        } catch let error as JWTError {
            throw Rejection(description: "the bearer JWT is not valid: \(error.errorType)\(error.reason.map { " (\($0))" } ?? "")")
        } catch {
            throw Rejection(description: "the bearer JWT is not valid")
        }
        guard claims.all["iss"]?.stringValue == configuration.issuer else {
            throw Rejection(description: "the bearer JWT is from issuer '\(claims.all["iss"]?.stringValue ?? "")', not \(configuration.issuer)")
        }
        let audiences = claims.all["aud"].map { $0.arrayValue?.compactMap(\.stringValue) ?? [$0.stringValue].compactMap { $0 } } ?? []
        guard audiences.contains(configuration.audience) else {
            throw Rejection(description: "the bearer JWT is not for audience \(configuration.audience)")
        }
        guard let user = claims.all[configuration.userClaim]?.stringValue ?? claims.all["sub"]?.stringValue, !user.isEmpty else {
            throw Rejection(description: "the bearer JWT names no user (\(configuration.userClaim) or sub)")
        }
        let roles: [String] = switch claims.all[configuration.rolesClaim] {
        case .array(let names)?: names.compactMap(\.stringValue)
        case .string(let name)?: [name]
        default: []
        }
        return (user, Set(roles), claims.all)
    }

    /// Every claim, with `exp` required and `exp`/`nbf` checked by the signature's verification.
    struct Claims: JWTPayload {
        let all: [String: JSONValue]
        let exp: ExpirationClaim
        let nbf: NotBeforeClaim?

        enum CodingKeys: String, CodingKey { case exp, nbf }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            exp = try container.decode(ExpirationClaim.self, forKey: .exp)
            nbf = try container.decodeIfPresent(NotBeforeClaim.self, forKey: .nbf)
            all = try decoder.singleValueContainer().decode([String: JSONValue].self)
        }

        func encode(to encoder: any Encoder) throws {
            try all.encode(to: encoder)
        }

        func verify(using _: some JWTAlgorithm) async throws {
            try exp.verifyNotExpired()
            try nbf?.verifyNotBefore()
        }
    }
}
