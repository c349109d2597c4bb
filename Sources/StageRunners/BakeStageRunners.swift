import Access
import Clouds
import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines

/// `bake`: Rosco's stage over the ``Bakery`` (decision 0019). The package is the stage's
/// `package` (a path in the bakery's package root) or the trigger's first artifact's `reference`;
/// the base image is `baseImage`, or `localhost/topsail-base:<baseOs>`; the recipe is
/// Containerfile instructions after `FROM`. The image's tag is the content hash of its inputs:
/// the same inputs reuse it unless `rebake` is set. `image.baked` records it on the image's stream,
/// and the outputs carry Spinnaker's `deploymentDetails`, which a downstream deploy uses when its
/// cluster names no image.
struct BakeStageRunner: StageRunner {
    let bakery: Bakery
    let store: any EventStore

    func run(_ run: StageRun) async throws -> StageOutcome {
        let stage = run.stage.json
        func failed(_ why: String) -> StageOutcome { StageOutcome(status: .terminal, outputs: ["error": .string(why)]) }
        let artifact = run.execution.trigger["artifacts"]?.arrayValue?.first
        guard let package = stage["package"]?.stringValue ?? artifact?["reference"]?.stringValue ?? artifact?["name"]?.stringValue else {
            return failed("bake needs package (a path in the bakery's package root) or a trigger artifact naming one")
        }
        guard let base = stage["baseImage"]?.stringValue ?? stage["baseOs"]?.stringValue.map({ "localhost/topsail-base:\($0)" }) else {
            return failed("bake needs baseImage (a local image) or baseOs (localhost/topsail-base:<baseOs>)")
        }
        let name = stage["imageName"]?.stringValue ?? stage["package"]?.stringValue.map { ($0 as NSString).lastPathComponent.lowercased() } ?? run.execution.pipeline.application ?? "image"
        var tags: [String: String] = [:]
        for (key, value) in stage["tags"]?.objectValue ?? stage["extendedAttributes"]?.objectValue ?? [:] {
            guard let text = value.stringValue else { return failed("tags hold strings: \(key) does not") }
            tags[key] = text
        }
        let request = Bakery.Request(imageName: name, baseImage: base, package: package, recipe: stage["recipe"]?.stringValue ?? Bakery.defaultRecipe,
                                     tags: tags, rebake: stage["rebake"]?.boolValue ?? false)
        let baked: Bakery.Baked
        do {
            baked = try await bakery.bake(request)
        } catch {
            return failed(error.description)
        }
        let details: JSONValue = [
            "imageId": .string(baked.reference), "ami": .string(baked.reference), "imageName": .string(name), "package": .string(package),
            "baseImage": .string(base), "cloudProviderType": "podman", "region": "local", "hash": .string(baked.hash), "cached": .bool(baked.cached),
            "pushed": baked.pushed.map(JSONValue.string) ?? .null,
        ]
        let stream = try StreamID(category: "image", id: name.replacingOccurrences(of: "/", with: "."))
        _ = try await store.append(to: stream, expected: .any, events: [NewEvent(type: "image.baked", payload: try JSONText(encoding: [
            "imageId": .string(baked.imageID), "reference": .string(baked.reference), "imageName": .string(name), "hash": .string(baked.hash),
            "tags": .object(tags.mapValues(JSONValue.string)), "cached": .bool(baked.cached), "buildLog": baked.buildLog.map(JSONValue.string) ?? .null,
            "pushed": baked.pushed.map(JSONValue.string) ?? .null, "execution": .string(run.executionID),
        ] as JSONValue), metadata: EventMetadata(correlationID: run.executionID, actor: "worker", source: "bakery"))])
        return StageOutcome(status: .succeeded, outputs: [
            "deploymentDetails": [details], "imageId": .string(baked.reference), "cached": .bool(baked.cached),
            "buildLog": baked.buildLog.map(JSONValue.string) ?? .null, "pushed": baked.pushed.map(JSONValue.string) ?? .null,
        ])
    }
}

/// `findImageFromTags`: the newest baked image of `packageName` whose tags include `tags`.
struct FindImageStageRunner: StageRunner {
    let bakery: Bakery

    func run(_ run: StageRun) async throws -> StageOutcome {
        let stage = run.stage.json
        func failed(_ why: String) -> StageOutcome { StageOutcome(status: .terminal, outputs: ["error": .string(why)]) }
        guard let name = stage["packageName"]?.stringValue ?? stage["imageName"]?.stringValue else { return failed("findImageFromTags needs packageName") }
        var tags: [String: String] = [:]
        for (key, value) in stage["tags"]?.objectValue ?? [:] {
            guard let text = value.stringValue else { return failed("tags hold strings: \(key) does not") }
            tags[key] = text
        }
        do {
            guard let found = try await bakery.find(name: name, tags: tags) else {
                return failed("no image of \(name) has the tags \(tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))")
            }
            return StageOutcome(status: .succeeded, outputs: [
                "deploymentDetails": [["imageId": .string(found.reference), "ami": .string(found.reference), "imageName": .string(name), "cloudProviderType": "podman", "region": "local"]],
                "imageId": .string(found.reference),
            ])
        } catch {
            return failed(error.description)
        }
    }
}
