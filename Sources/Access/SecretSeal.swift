import Crypto
import EventLog
import Foundation

/// Seals the secrets pipeline authors put in triggers (`secret` of a git, webhook or CI trigger)
/// with the installation's key (AES-256-GCM, `TOPSAIL_SECRETS_KEY`), so that the saved pipeline —
/// an event in the log, published to Kafka, shown by the API — holds `sealed:v1:…` and never the
/// secret. Only trigger intake opens it, to check a delivery's signature.
public struct SecretSeal: Sendable {
    public static let prefix = "sealed:v1:"

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    let key: SymmetricKey

    /// `base64` holds the 32 bytes of the key.
    public init(base64: String) throws {
        guard let bytes = Data(base64Encoded: base64.trimmingCharacters(in: .whitespacesAndNewlines)), bytes.count == 32 else {
            throw Failure(description: "the secrets key must be 32 bytes in base64 (make one with: head -c 32 /dev/urandom | base64)")
        }
        key = SymmetricKey(data: bytes)
    }

    public static func isSealed(_ value: String) -> Bool { value.hasPrefix(prefix) }

    public func seal(_ secret: String) throws -> String {
        let box = try AES.GCM.seal(Array(secret.utf8), using: key)
        guard let combined = box.combined else { throw Failure(description: "sealing a secret failed") }
        return Self.prefix + combined.base64EncodedString()
    }

    public func open(_ sealed: String) throws -> String {
        guard Self.isSealed(sealed), let data = Data(base64Encoded: String(sealed.dropFirst(Self.prefix.count))) else {
            throw Failure(description: "not a sealed secret")
        }
        do {
            let plain = try AES.GCM.open(try AES.GCM.SealedBox(combined: data), using: key)
            return String(decoding: plain, as: UTF8.self)
        } catch {
            throw Failure(description: "a sealed secret does not open with this installation's key (was it sealed by another installation?)")
        }
    }

    /// The pipeline with every trigger's plain `secret` sealed (sealed ones are kept as they are).
    public func sealingTriggerSecrets(of pipeline: [String: JSONValue]) throws -> [String: JSONValue] {
        guard let triggers = pipeline["triggers"]?.arrayValue else { return pipeline }
        var result = pipeline
        result["triggers"] = .array(try triggers.map { trigger in
            guard var fields = trigger.objectValue, let secret = fields["secret"]?.stringValue, !secret.isEmpty, !Self.isSealed(secret) else { return trigger }
            fields["secret"] = .string(try seal(secret))
            return .object(fields)
        })
        return result
    }

    /// Whether any trigger of the pipeline has a plain secret (which only a key could seal).
    public static func hasPlainTriggerSecrets(_ pipeline: [String: JSONValue]) -> Bool {
        (pipeline["triggers"]?.arrayValue ?? []).contains { trigger in
            guard let secret = trigger["secret"]?.stringValue else { return false }
            return !secret.isEmpty && !isSealed(secret)
        }
    }
}
