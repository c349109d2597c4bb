import Access
import ArgumentParser
import CLISupport
import EventLog
import Foundation
import PipelineEngine
import Pipelines
import PostgresEventStore

/// Configuration documents read from files: applications and pipelines, JSON or YAML.
enum ConfigurationFiles {
    enum Document {
        case application(name: String, json: JSONValue, source: String)
        case pipeline(PipelineConfig, source: String)
    }

    /// Reads a file or every `.json`, `.yaml` and `.yml` file below a directory (in name order).
    /// A file holds one document, a list of them, or (YAML) several `---` documents.
    static func read(_ path: String, disabledStageTypes: Set<String> = []) throws -> [Document] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CLIError("\(path) does not exist")
        }
        var files = [path]
        if isDirectory.boolValue {
            let root = URL(fileURLWithPath: path)
            files = (FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? [])
                .filter { ["json", "yaml", "yml"].contains($0.pathExtension.lowercased()) }
                .map(\.path).sorted()
        }
        var documents: [Document] = []
        var problems: [String] = []
        for file in files {
            let values: [JSONValue]
            do {
                values = try self.values(in: file)
            } catch {
                problems.append("\(error)")
                continue
            }
            for (index, value) in values.enumerated() {
                let place = values.count == 1 ? file : "\(file) (document \(index + 1))"
                do {
                    documents.append(try document(value, source: place, disabledStageTypes: disabledStageTypes))
                } catch {
                    problems.append("\(error)")
                }
            }
        }
        guard problems.isEmpty else { throw CLIError(problems.joined(separator: "\n")) }
        return documents
    }

    private static func values(in file: String) throws -> [JSONValue] {
        guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read \(file)") }
        guard data.count <= PipelineFile.maximumBytes else { throw CLIError("\(file) is over the limit of \(PipelineFile.maximumBytes) bytes") }
        let parsed: [JSONValue]
        if file.lowercased().hasSuffix(".json") {
            guard let value = try? JSONDecoder().decode(JSONValue.self, from: data) else { throw CLIError("\(file) is not valid JSON") }
            parsed = [value]
        } else {
            do {
                parsed = try YAMLDocuments.documents(String(decoding: data, as: UTF8.self))
            } catch {
                throw CLIError("\(file) is \(error)")
            }
        }
        return parsed.flatMap { $0.arrayValue ?? [$0] }
    }

    private static func document(_ value: JSONValue, source: String, disabledStageTypes: Set<String>) throws -> Document {
        let kind = value["kind"]?.stringValue
        if kind == "application" || (kind == nil && value["stages"] == nil && value["application"] == nil) {
            guard var json = value.objectValue, let name = json["name"]?.stringValue else { throw CLIError("\(source): an application needs a name") }
            if let problem = ApplicationStore.problem(name: name) { throw CLIError("\(source): \(problem)") }
            json["kind"] = nil
            return .application(name: name, json: .object(json), source: source)
        }
        var json = value
        if var object = json.objectValue {
            object["kind"] = nil
            json = .object(object)
        }
        switch PipelineValidation.parse(json, disabledStageTypes: disabledStageTypes) {
        case .success(let pipeline):
            guard pipeline.application?.isEmpty == false, pipeline.name?.isEmpty == false else {
                throw CLIError("\(source): a pipeline needs an application and a name")
            }
            return .pipeline(pipeline, source: source)
        case .failure(let problems):
            throw CLIError(problems.problems.map { "\(source): \($0)" }.joined(separator: "\n"))
        }
    }
}

struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Create or update applications and pipelines from files (pipelines as code), printing what changed.",
        discussion: """
            Reads a JSON or YAML file, or every .json/.yaml/.yml file below a directory. A document \
            with "stages" is a pipeline; one with "kind": "application" (or a name and no stages) is an \
            application. Every document is checked first and nothing is saved while any is invalid. A \
            pipeline without an id keeps the id of the saved pipeline of its application with that \
            name. Documents equal to what is saved are left alone, so applying twice changes nothing.
            """
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var api: APIClientOptions
    @OptionGroup var policy: StagePolicyOptions
    @Option(name: .shortAndLong, help: "A file or a directory.") var file: String
    @Flag(help: "Print what would change without saving.") var dryRun = false

    func run() async throws {
        let documents = try ConfigurationFiles.read(file, disabledStageTypes: policy.disabledStageTypes)
        guard !documents.isEmpty else { throw CLIError("\(file) holds no applications or pipelines") }
        let dryRun = self.dryRun
        try await withConfigurationBackend(options: options, api: api, label: "topsail.apply") { backend in
            try await Self.apply(documents, to: backend, dryRun: dryRun)
        }
    }

    static func apply(_ documents: [ConfigurationFiles.Document], to backend: some ConfigurationBackend, dryRun: Bool) async throws {
        var counts: [String: Int] = [:]
        func report(_ what: String, _ outcome: String, version: Int64?) {
            counts[outcome, default: 0] += 1
            Output.line("\(what): \(outcome)" + (version.map { " (version \($0))" } ?? ""))
        }
        // Applications before the pipelines that belong to them.
        for case let .application(name, json, _) in documents {
            let current = try await backend.application(name)
            if current?.document == json { report("application \(name)", "unchanged", version: current?.version); continue }
            let outcome = current == nil ? "created" : "updated"
            let version = dryRun ? nil : try await backend.saveApplication(json, name: name, basedOn: current?.version ?? 0)
            report("application \(name)", dryRun ? "would be \(outcome)" : outcome, version: version)
        }
        for case .pipeline(var pipeline, _) in documents {
            let application = pipeline.application ?? "", name = pipeline.name ?? ""
            if pipeline.id == nil, let existing = try await backend.pipeline(application: application, name: name) {
                pipeline.json["id"] = existing.id.map(JSONValue.string)
            }
            if pipeline.id == nil { pipeline.json["id"] = .string(UUID().uuidString.lowercased()) }
            let id = pipeline.id ?? ""
            let current = try await backend.pipeline(id: id)
            let what = "pipeline \(application)/\(name) (\(id))"
            if current?.document == .object(pipeline.json) { report(what, "unchanged", version: current?.version); continue }
            let outcome = current == nil ? "created" : "updated"
            let version = dryRun ? nil : try await backend.savePipeline(pipeline, basedOn: current?.version ?? 0)
            report(what, dryRun ? "would be \(outcome)" : outcome, version: version)
        }
        Output.line(counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
    }
}

/// Runs `body` with the HTTP API when one is given, else with the database.
func withConfigurationBackend(
    options: CommonOptions, api: APIClientOptions, label: String, _ body: @Sendable @escaping (any ConfigurationBackend) async throws -> Void
) async throws {
    if let remote = try api.remote() {
        try await body(APIConfigurationBackend(api: remote))
        return
    }
    let database = try options.database()
    let logger = options.logger(label)
    let metadata = EventMetadata(actor: ProcessInfo.processInfo.environment["USER"] ?? "cli", source: "cli")
    try await withDatabase(database, logger: logger) { client in
        try await body(DatabaseConfigurationBackend(client: client, logger: logger, metadata: metadata))
    }
}

struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write an application and its pipelines out as files that topsail apply takes back.",
        discussion: """
            Without --output, prints one JSON list (the application, then its pipelines by name). With \
            --output DIR, writes DIR/application.json and DIR/pipelines/<name>.json (or .yaml with \
            --yaml); applying DIR again changes nothing.
            """
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var api: APIClientOptions
    @Argument(help: "The application.") var application: String
    @Option(help: "A directory to write the files into (created when missing).") var output: String?
    @Flag(help: "Write YAML instead of JSON.") var yaml = false

    func run() async throws {
        let (name, output, yaml) = (application, self.output, self.yaml)
        try await withConfigurationBackend(options: options, api: api, label: "topsail.export") { backend in
            let application = try await backend.application(name)
            let pipelines = try await backend.pipelines(of: name)
            guard application != nil || !pipelines.isEmpty else { throw CLIError("no application \(name) and no pipelines of it") }
            var documents: [(file: String, value: JSONValue)] = []
            if let application, var json = application.document.objectValue {
                json["kind"] = "application"
                documents.append(("application", .object(json)))
            }
            for pipeline in pipelines {
                let base = (pipeline.name ?? pipeline.id ?? "pipeline").map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }
                documents.append(("pipelines/\(String(base))", .object(pipeline.json)))
            }
            guard let output else {
                Output.line(try Self.json(.array(documents.map(\.value))))
                return
            }
            for document in documents {
                let url = URL(fileURLWithPath: output).appendingPathComponent(document.file + (yaml ? ".yaml" : ".json"))
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try (yaml ? try YAMLDocuments.yaml(document.value) : try Self.json(document.value) + "\n").write(to: url, atomically: true, encoding: .utf8)
                Output.line("wrote \(url.path)")
            }
        }
    }

    static func json(_ value: JSONValue) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
