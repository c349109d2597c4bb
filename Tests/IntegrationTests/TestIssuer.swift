import Crypto
import EventLog
import Foundation

/// An OIDC issuer for tests: a P-256 key, its JSON Web Key Set in a file, and signed JWTs.
struct TestIssuer: Sendable {
    let issuer = "https://login.example.com"
    let key = P256.Signing.PrivateKey()
    let directory: URL
    /// The key set file (`--oidc-jwks`).
    let keys: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("oidc"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        keys = directory.appendingPathComponent("jwks.json")
        let raw = key.publicKey.rawRepresentation
        let jwks: JSONValue = ["keys": [[
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "k1",
            "x": .string(Self.base64url(raw.prefix(32))), "y": .string(Self.base64url(raw.suffix(32))),
        ]]]
        try JSONEncoder().encode(jwks).write(to: keys)
    }

    /// A JWT from this issuer for audience `topsail` and subject `u-1`, valid five minutes,
    /// with `claims` over those; signed by `signer` (this issuer's key unless given).
    func jwt(_ claims: [String: JSONValue], key signer: P256.Signing.PrivateKey? = nil) throws -> String {
        let now = Date().timeIntervalSince1970
        var all: [String: JSONValue] = ["iss": .string(issuer), "aud": "topsail", "sub": "u-1", "exp": .number(now + 300), "iat": .number(now)]
        all.merge(claims) { $1 }
        let header = Self.base64url(try JSONEncoder().encode(["alg": "ES256", "typ": "JWT", "kid": "k1"] as JSONValue))
        let payload = Self.base64url(try JSONEncoder().encode(JSONValue.object(all)))
        let signature = try (signer ?? key).signature(for: Data("\(header).\(payload)".utf8)).rawRepresentation
        return "\(header).\(payload).\(Self.base64url(signature))"
    }

    func remove() {
        try? FileManager.default.removeItem(at: directory)
    }

    static func base64url(_ data: some DataProtocol) -> String {
        Data(data).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
