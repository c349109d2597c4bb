/// The identity of an event stream, written `category-id`: `execution-6f1c…`, `application-web`.
///
/// The category routes the stream's events to the Kafka topic `topsail.<category>`, so it is kept
/// to characters every Kafka cluster accepts in a topic name. The id may contain anything printable
/// except whitespace and is at most ``maximumIDLength`` characters.
public struct StreamID: Hashable, Sendable, CustomStringConvertible, Codable {
    public static let maximumCategoryLength = 64
    public static let maximumIDLength = 200

    /// The part before the first `-`: lowercase letters and digits, starting with a letter.
    public let category: String
    /// The part after the first `-`.
    public let id: String

    public var description: String { "\(category)-\(id)" }

    /// Parses and validates `category-id`.
    public init(_ text: String) throws(StreamIDError) {
        guard let dash = text.firstIndex(of: "-") else {
            throw StreamIDError(text: text, reason: "it has no '-' between category and id (expected category-id, e.g. execution-42)")
        }
        try self.init(category: String(text[..<dash]), id: String(text[text.index(after: dash)...]))
    }

    /// Validates the two parts.
    public init(category: String, id: String) throws(StreamIDError) {
        func refuse(_ reason: String) -> StreamIDError { StreamIDError(text: "\(category)-\(id)", reason: reason) }
        guard !category.isEmpty else { throw refuse("the category is empty") }
        guard category.utf8.count <= Self.maximumCategoryLength else {
            throw refuse("the category is longer than \(Self.maximumCategoryLength) characters")
        }
        let lowercase = UInt8(ascii: "a")...UInt8(ascii: "z"), digits = UInt8(ascii: "0")...UInt8(ascii: "9")
        guard let first = category.utf8.first, lowercase.contains(first),
              category.utf8.allSatisfy({ lowercase.contains($0) || digits.contains($0) })
        else {
            throw refuse("the category must be lowercase letters and digits, starting with a letter")
        }
        guard !id.isEmpty else { throw refuse("the id after '-' is empty") }
        // Printable ASCII, the usual case, is checked byte by byte; anything else by its scalars.
        let printableASCII = id.utf8.count <= Self.maximumIDLength && id.utf8.allSatisfy { $0 >= 0x21 && $0 < 0x7F }
        if !printableASCII {
            guard id.count <= Self.maximumIDLength else { throw refuse("the id is longer than \(Self.maximumIDLength) characters") }
            guard id.unicodeScalars.allSatisfy({ !$0.properties.isWhitespace && $0.value >= 0x21 && $0.value != 0x7F }) else {
                throw refuse("the id contains whitespace or control characters")
            }
        }
        self.category = category
        self.id = id
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// A stream id that is not of the form `category-id`.
public struct StreamIDError: Error, Equatable, CustomStringConvertible {
    public let text: String
    public let reason: String
    public var description: String { "invalid stream id '\(text)': \(reason)" }
}
