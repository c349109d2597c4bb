import EventLog
import Foundation

/// Replaces the values of the installation's known secrets (the database password, Kafka's SASL
/// and TLS key passwords …) wherever a stage's outputs or an error could echo them, before they
/// reach the log, Kafka, the API or the engine's own log lines.
public struct SecretRedactor: Sendable {
    public static let mask = "***"
    /// Shorter values are not treated as secrets: masking every "a" or "1" would garble outputs
    /// and hide nothing.
    static let minimumLength = 4

    let secrets: [String]

    public init(secrets: [String]) {
        // Longest first, so a secret that contains another is masked whole.
        self.secrets = Array(Set(secrets.filter { $0.count >= Self.minimumLength })).sorted { $0.count > $1.count }
    }

    public static let none = SecretRedactor(secrets: [])

    /// The secrets among librdkafka properties: any key naming a password, secret or private key.
    public static func kafkaSecrets(_ properties: [String: String]) -> [String] {
        properties.filter { key, _ in ["password", "secret", "key.pem", "private"].contains { key.lowercased().contains($0) } }.map(\.value)
    }

    public func redact(_ text: String) -> String {
        guard !secrets.isEmpty else { return text }
        var result = text
        for secret in secrets where result.contains(secret) {
            result = result.replacingOccurrences(of: secret, with: Self.mask)
        }
        return result
    }

    public func redact(_ value: JSONValue) -> JSONValue {
        guard !secrets.isEmpty else { return value }
        switch value {
        case .string(let text): return .string(redact(text))
        case .array(let items): return .array(items.map(redact))
        case .object(let fields): return .object(Dictionary(fields.map { (redact($0.key), redact($0.value)) }) { first, _ in first })
        default: return value
        }
    }

    public func redact(_ fields: [String: JSONValue]) -> [String: JSONValue] {
        guard !secrets.isEmpty else { return fields }
        return redact(JSONValue.object(fields)).objectValue ?? fields
    }
}
