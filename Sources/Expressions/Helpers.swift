import EventLog
import Foundation

/// The `#helpers`. Each takes JSON values and returns one; none reaches outside the context.
enum Helpers {
    static let names = ["alphanumerical", "fromBase64", "judgment", "readJson", "stage", "stageByRefId", "stageExists",
                        "toBase64", "toBoolean", "toFloat", "toInt", "toJson"]

    static func call(_ name: String, _ arguments: [JSONValue], context: ExpressionContext) throws(ExpressionError) -> JSONValue {
        func one() throws(ExpressionError) -> JSONValue {
            guard arguments.count == 1 else { throw ExpressionError("#\(name) takes 1 argument, not \(arguments.count)") }
            return arguments[0]
        }
        func text() throws(ExpressionError) -> String {
            let value = try one()
            guard case .string(let text) = value else { throw ExpressionError("#\(name) needs a string, not \(value.typeName)") }
            return text
        }
        func stage(where matches: (JSONValue) -> Bool, _ what: String) throws(ExpressionError) -> JSONValue {
            guard let found = context.stages.first(where: matches) else { throw ExpressionError("#\(name): no stage \(what)") }
            return found
        }
        switch name {
        case "toInt":
            let value = try one()
            if let integer = value.intValue { return .number(Double(integer)) }
            if case .string(let text) = value, let integer = Int(text.trimmingCharacters(in: .whitespaces)) { return .number(Double(integer)) }
            throw ExpressionError("#toInt cannot read \(value.rendered.prefix(40)) as a whole number")
        case "toFloat":
            let value = try one()
            if case .number = value { return value }
            if case .string(let text) = value, let number = Double(text.trimmingCharacters(in: .whitespaces)), number.isFinite { return .number(number) }
            throw ExpressionError("#toFloat cannot read \(value.rendered.prefix(40)) as a number")
        case "toBoolean":
            return .bool(try one().truth())
        case "toJson":
            return .string(try one().rendered)
        case "readJson":
            let source = try text()
            guard let data = source.data(using: .utf8), let value = try? JSONDecoder().decode(JSONValue.self, from: data) else {
                throw ExpressionError("#readJson: not valid JSON")
            }
            return value
        case "toBase64":
            return .string(Data(try text().utf8).base64EncodedString())
        case "fromBase64":
            guard let data = Data(base64Encoded: try text()) else { throw ExpressionError("#fromBase64: not valid base64") }
            return .string(String(decoding: data, as: UTF8.self))
        case "alphanumerical":
            return .string(String(try text().unicodeScalars.filter { $0.properties.isAlphabetic || ("0"..."9").contains($0) }.map(Character.init)))
        case "stage":
            let stageName = try text()
            return try stage(where: { $0["name"]?.stringValue == stageName }, "named '\(stageName)'")
        case "stageByRefId":
            let ref = try text()
            return try stage(where: { $0["refId"]?.stringValue == ref }, "with refId '\(ref)'")
        case "stageExists":
            let stageName = try text()
            return .bool(context.stages.contains { $0["name"]?.stringValue == stageName || $0["refId"]?.stringValue == stageName })
        case "judgment":
            let stageName = try text()
            let found = try stage(where: { ($0["name"]?.stringValue == stageName || $0["refId"]?.stringValue == stageName) && $0["type"]?.stringValue == "manualJudgment" },
                                  "'\(stageName)' of type manualJudgment")
            return found["outputs"]?["judgmentInput"] ?? .null
        default:
            throw ExpressionError("unknown helper #\(name) (known: \(names.map { "#\($0)" }.joined(separator: ", ")))")
        }
    }
}
