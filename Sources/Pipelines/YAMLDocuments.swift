import EventLog
import Yams

/// Pipelines and applications as YAML, read and written the same way by the CLI (`topsail apply`,
/// `export --yaml`) and the API (a pipeline saved as YAML, the editor's YAML view).
public enum YAMLDocuments {
    public struct Problem: Error, CustomStringConvertible {
        public let description: String
    }

    /// Every document of a YAML text, as JSON. Throws at the first syntax error (the parser, not
    /// `Yams.load_all`, which ends quietly there).
    public static func documents(_ text: String) throws(Problem) -> [JSONValue] {
        do {
            let parser = try Parser(yaml: text)
            var documents: [JSONValue] = []
            while let root = try parser.nextRoot() { documents.append(try json(root)) }
            return documents
        } catch let problem as Problem {
            throw problem
        } catch {
            throw Problem(description: "not valid YAML: \(error)")
        }
    }

    /// A YAML node as JSON, by its resolved tag (`true` a boolean, `30` a number, `"30"` a string).
    public static func json(_ node: Node) throws(Problem) -> JSONValue {
        switch node {
        case .scalar:
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case Tag.Name.null: return .null
            case Tag.Name.bool: return node.bool.map(JSONValue.bool) ?? .string(node.string ?? "")
            case Tag.Name.int: return node.int.map { .number(Double($0)) } ?? .string(node.string ?? "")
            case Tag.Name.float: return node.float.map(JSONValue.number) ?? .string(node.string ?? "")
            default: return .string(node.string ?? "")
            }
        case .sequence(let sequence):
            var items: [JSONValue] = []
            for item in sequence { items.append(try json(item)) }
            return .array(items)
        case .mapping(let mapping):
            var object: [String: JSONValue] = [:]
            for (key, value) in mapping {
                guard let name = key.string else { throw Problem(description: "a YAML mapping key is not a string") }
                object[name] = try json(value)
            }
            return .object(object)
        case .alias:
            throw Problem(description: "YAML aliases are not supported in configuration documents")
        }
    }

    /// YAML that reads back as the same JSON: strings are quoted, so "true" or "30" stay strings
    /// and booleans stay booleans (not the 1 and 0 a detour through Foundation would make them).
    public static func yaml(_ value: JSONValue) throws -> String {
        try Yams.serialize(node: node(value))
    }

    static func node(_ value: JSONValue) -> Node {
        switch value {
        case .null: return Node("null", Tag(.null))
        case .bool(let flag): return Node(flag ? "true" : "false", Tag(.bool))
        case .number(let number):
            if number.rounded() == number, abs(number) < 1e15 { return Node(String(Int64(number)), Tag(.int)) }
            return Node(String(number), Tag(.float))
        case .string(let text): return Node(text, Tag(.str), .doubleQuoted)
        case .array(let items): return Node(items.map(node))
        case .object(let object): return Node(object.sorted { $0.key < $1.key }.map { (Node($0.key, Tag(.str)), node($0.value)) })
        }
    }
}
