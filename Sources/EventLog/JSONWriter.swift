/// Writes JSON text, compact, with object keys sorted: Topsail's own writer for ``JSONValue``
/// and for the read models' rows, the counterpart of ``JSONParser``. Foundation's `JSONEncoder`
/// spent most of a rebuild's time going through `Encodable`.
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    public var text: String { String(decoding: bytes, as: UTF8.self) }

    /// A number that JSON cannot hold (NaN, an infinity).
    public struct NotRepresentable: Error, CustomStringConvertible {
        public let value: Double
        public var description: String { "\(value) cannot be written as JSON" }
    }

    public mutating func write(_ value: JSONValue) throws {
        switch value {
        case .null: raw("null")
        case .bool(let flag): raw(flag ? "true" : "false")
        case .number(let number): try write(number)
        case .string(let string): write(string)
        case .array(let values):
            bytes.append(UInt8(ascii: "["))
            for (index, element) in values.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                try write(element)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let fields):
            bytes.append(UInt8(ascii: "{"))
            for (index, key) in fields.keys.sorted().enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                write(key)
                bytes.append(UInt8(ascii: ":"))
                try write(fields[key]!)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    /// An integral number as an integer (`3`, not `3.0`), any other in Swift's shortest form.
    public mutating func write(_ number: Double) throws {
        guard number.isFinite else { throw NotRepresentable(value: number) }
        if number.rounded() == number, abs(number) < 1e15 {
            raw(String(Int64(number)))
        } else {
            raw(String(number))
        }
    }

    public mutating func write(_ number: Int64) { raw(String(number)) }

    /// A string literal, quotes included, escaping what JSON requires.
    public mutating func write(_ string: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): raw("\\\"")
            case UInt8(ascii: "\\"): raw("\\\\")
            case UInt8(ascii: "\n"): raw("\\n")
            case UInt8(ascii: "\r"): raw("\\r")
            case UInt8(ascii: "\t"): raw("\\t")
            case 0..<0x20:
                raw("\\u00")
                bytes.append(Self.hex[Int(byte >> 4)])
                bytes.append(Self.hex[Int(byte & 0xF)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// Text that is JSON already (a literal, a punctuation mark, a stored document).
    public mutating func raw(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    private static let hex = Array("0123456789abcdef".utf8)
}

extension JSONValue {
    /// This value as compact JSON text with sorted keys.
    public func jsonText() throws -> String {
        var writer = JSONWriter()
        try writer.write(self)
        return writer.text
    }
}
