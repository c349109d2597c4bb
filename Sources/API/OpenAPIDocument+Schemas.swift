import EventLog
import Foundation
import Pipelines

/// The components the paths refer to: executions, events, errors and the rest.
extension OpenAPIDocument {
    static var schemas: [String: JSONValue] {
        let time: JSONValue = ["type": "string", "format": "date-time"]
        let string: JSONValue = ["type": "string"]
        let integer: JSONValue = ["type": "integer"]
        let strings: JSONValue = ["type": "array", "items": string]
        let stage: JSONValue = object(
            ["refId", "name", "type", "status", "attempt", "outputs"],
            ["refId": string, "name": string, "type": string, "status": ref("ExecutionStatus"), "attempt": integer,
             "startTime": time, "endTime": time, "outputs": ["type": "object"], "requisiteStageRefIds": strings, "context": ["type": "object"]])
        return [
            "Error": object(["error", "message", "status"], [
                "error": string, "message": string, "status": integer,
                "problems": ["type": "array", "items": object(["path", "message"], ["path": string, "stage": string, "message": string])],
            ]),
            "Status": object(["status"], ["status": string]),
            "ExecutionStatus": ["type": "string", "enum": .array(ExecutionStatus.allCases.map { JSONValue.string($0.rawValue) })],
            "Execution": object(["id", "status", "trigger", "parameters", "stages"], [
                "id": string, "status": ref("ExecutionStatus"), "application": string, "pipeline": string, "pipelineConfigId": string,
                "trigger": [:], "parameters": ["type": "object"], "buildTime": time, "startTime": time, "endTime": time,
                "stages": ["type": "array", "items": stage], "version": integer,
            ]),
            "ExecutionSummary": object(["id", "status", "buildTime"], [
                "id": string, "application": string, "name": string, "pipelineConfigId": string, "status": ref("ExecutionStatus"),
                "triggerType": string, "triggeredBy": string, "buildTime": time, "startTime": time, "endTime": time,
            ]),
            "EventPage": object(["events", "next"], ["events": ["type": "array", "items": ref("Event")], "next": ["type": "integer", "nullable": true]]),
            "Event": object(["position", "id", "stream", "version", "type", "time", "data"], [
                "position": integer, "id": string, "stream": string, "version": integer, "type": string, "time": time,
                "actor": string, "source": string, "correlationId": string, "causationId": string, "data": [:],
            ]),
            "Evaluation": object(["expression", "result"], ["expression": string, "result": ["nullable": true], "error": string]),
            "StagePatch": .object(object([], [
                "judgmentStatus": ["type": "string", "enum": ["continue", "stop"]], "judgmentInput": string, "skipRemainingWait": ["type": "boolean", "enum": [true]],
            ]).objectValue!.merging(["anyOf": [["required": ["judgmentStatus"]], ["required": ["skipRemainingWait"]]]]) { $1 }),
            "TriggerRequest": object([], [
                "type": string, "user": string, "parameters": ["type": "object"],
                "runAsUser": ["type": "string", "description": "Run as this service account (the caller must hold all its roles)."],
            ]),
            "Triggered": object(["id", "ref"], ["id": string, "ref": string]),
            "TriggerAnswer": object(["eventProcessed", "eventId"], [
                "eventProcessed": ["type": "boolean"], "eventId": string, "duplicate": ["type": "boolean"],
                "executions": ["type": "array", "items": object(["id", "ref"], [
                    "id": string, "ref": string, "pipelineId": string, "application": string, "pipeline": string, "trigger": integer, "type": string,
                ])],
                "notMatched": ["type": "array", "items": object(["pipelineId", "trigger", "type", "reason"], [
                    "pipelineId": string, "application": string, "pipeline": string, "trigger": integer, "type": string, "reason": string,
                    "refused": ["type": "boolean"],
                ])],
                "notMatchedHidden": integer, "hint": string, "message": string,
            ]),
            "PipelineConfig": object(["application", "name", "stages"], [
                "id": string, "application": ["type": "string", "minLength": 1], "name": ["type": "string", "minLength": 1], "disabled": ["type": "boolean"],
                "limitConcurrent": ["type": "boolean"], "keepWaitingPipelines": ["type": "boolean"],
                "parameterConfig": ["type": "array", "items": ["type": "object"]], "triggers": ["type": "array", "items": ["type": "object"]],
                "stages": ["type": "array", "items": ref("Stage"), "minItems": 1],
            ]),
            "Stage": object(["refId", "type"], ["refId": string, "type": string, "name": string, "requisiteStageRefIds": strings]),
            "Saved": object(["id", "version"], ["id": string, "version": integer]),
            "Deleted": object(["id", "version", "deleted"], ["id": string, "version": integer, "deleted": ["type": "boolean"]]),
            "SavedApplication": object(["name", "version"], ["name": string, "version": integer]),
            "DeletedApplication": object(["name", "version", "deleted"], ["name": string, "version": integer, "deleted": ["type": "boolean"]]),
            "Application": object(["name"], [
                "name": ["type": "string", "pattern": "^[a-z][a-z0-9-]*$", "maxLength": 100], "description": string,
                "email": ["type": "string", "format": "email"], "attributes": ["type": "object"],
                "permissions": object([], ["READ": strings, "WRITE": strings, "EXECUTE": strings]), "version": integer,
            ]),
            "Token": object(["id", "user", "created", "revoked"], [
                "id": string, "user": string, "name": string, "created": time, "revoked": ["type": "boolean"],
            ]),
            "IssuedToken": object(["id", "user", "token"], ["id": string, "user": string, "token": string]),
            "Version": object(["version", "recordedAt", "deleted"], [
                "version": integer, "recordedAt": time, "actor": string, "source": string, "document": ["nullable": true], "deleted": ["type": "boolean"],
            ]),
        ]
    }
}
