import Crypto
import Foundation

/// Proof that a delivery comes from who holds a trigger's secret: GitHub's `X-Hub-Signature-256`
/// (`sha256=` and the HMAC-SHA256 of the raw body, in hex) and its older `X-Hub-Signature`
/// (`sha1=`, HMAC-SHA1), GitLab's `X-Gitlab-Token` (the secret itself), and for generic webhooks
/// and CI builds either of GitHub's headers or `X-Topsail-Token`. Every comparison takes the same
/// time whatever the given value.
public enum Signatures {
    public enum Verdict: Sendable, Equatable {
        case valid
        case missing(String)
        case invalid(String)

        public var isValid: Bool { self == .valid }
    }

    /// The headers a delivery may prove itself with, as given (lowercased names).
    public struct Proof: Sendable {
        public var hubSignature256: String?
        public var hubSignature: String?
        public var gitlabToken: String?
        public var token: String?

        public init(hubSignature256: String? = nil, hubSignature: String? = nil, gitlabToken: String? = nil, token: String? = nil) {
            self.hubSignature256 = hubSignature256
            self.hubSignature = hubSignature
            self.gitlabToken = gitlabToken
            self.token = token
        }

        public init(headers: [String: String]) {
            self.init(hubSignature256: headers["x-hub-signature-256"], hubSignature: headers["x-hub-signature"],
                      gitlabToken: headers["x-gitlab-token"], token: headers["x-topsail-token"])
        }
    }

    /// Whether `proof` shows the sender holds `secret` for a delivery of `body`. The strongest
    /// proof given counts: a signature over the body before a bare token.
    public static func verify(_ proof: Proof, body: [UInt8], secret: String) -> Verdict {
        let key = SymmetricKey(data: Array(secret.utf8))
        if let given = proof.hubSignature256 {
            let expected = "sha256=" + hex(HMAC<SHA256>.authenticationCode(for: body, using: key))
            return constantTimeEqual(given.lowercased(), expected) ? .valid : .invalid("X-Hub-Signature-256 does not match the body signed with the trigger's secret")
        }
        if let given = proof.hubSignature {
            let expected = "sha1=" + hex(HMAC<Insecure.SHA1>.authenticationCode(for: body, using: key))
            return constantTimeEqual(given.lowercased(), expected) ? .valid : .invalid("X-Hub-Signature does not match the body signed with the trigger's secret")
        }
        if let given = proof.gitlabToken ?? proof.token {
            let header = proof.gitlabToken != nil ? "X-Gitlab-Token" : "X-Topsail-Token"
            return constantTimeEqual(given, secret) ? .valid : .invalid("\(header) is not the trigger's secret")
        }
        return .missing("the trigger has a secret and the delivery carries no X-Hub-Signature-256, X-Hub-Signature, X-Gitlab-Token or X-Topsail-Token")
    }

    /// Compares in time that depends only on the lengths (the digests of both are compared, so
    /// not even a length leaks through an early exit).
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let left = SHA256.hash(data: Array(a.utf8)), right = SHA256.hash(data: Array(b.utf8))
        var difference: UInt8 = 0
        for (x, y) in zip(left, right) { difference |= x ^ y }
        return difference == 0
    }

    static func hex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
        bytes.map { String(format: "%02x", $0) }.joined()
    }
}
