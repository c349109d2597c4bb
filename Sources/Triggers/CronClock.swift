import EventLog
import Foundation
import Logging
import PostgresEventStore
import PostgresNIO
import ServiceLifecycle

/// Fires cron triggers (with the `scheduler` role). Every second it looks at the enabled cron
/// triggers of saved pipelines and hands each fire time that came to the trigger intake as a
/// delivery keyed by (pipeline, trigger, fire time): however many schedulers run, each fire
/// time is one receipt and starts one execution. What fired is in the log, so after a restart
/// each trigger continues from its last receipt: fire times missed by more than the misfire
/// threshold are skipped (`misfire: skip`, the default, as Echo drops them) or the latest of
/// them fires once (`misfire: fireOnce`).
public final class CronClock: Service, Sendable {
    let intake: TriggerIntake
    let client: PostgresClient
    /// The zone of triggers that name none, as configured (its name is what runs show).
    let defaultZone: String
    /// A fire time this late is a misfire (Quartz's misfireThreshold).
    let misfireThreshold: Duration
    let interval: Duration
    let now: @Sendable () -> Date
    let logger: Logger

    public init(
        intake: TriggerIntake, client: PostgresClient, defaultZone: String = "UTC", misfireThreshold: Duration = .seconds(60),
        interval: Duration = .seconds(1), now: @escaping @Sendable () -> Date = { Date() }, logger: Logger
    ) {
        self.intake = intake
        self.client = client
        self.defaultZone = defaultZone
        self.misfireThreshold = misfireThreshold
        self.interval = interval
        self.now = now
        self.logger = logger
    }

    /// A cron trigger as the clock follows it.
    struct Schedule: Sendable {
        let pipelineID: String
        let index: Int
        let key: String
        let expression: CronExpression
        let zone: TimeZone
        /// The zone's name as the trigger (or the configuration) gives it.
        let zoneName: String
        let fireOnce: Bool
        /// The next fire time not yet handed over.
        var next: Date?
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var schedules: [String: Schedule] = [:]
            var loadedAt = ContinuousClock.now - .seconds(3600)
            while !Task.isCancelled {
                do {
                    if ContinuousClock.now - loadedAt > .seconds(5) {
                        schedules = try await self.reload(schedules)
                        loadedAt = .now
                    }
                    for key in schedules.keys.sorted() {
                        guard var schedule = schedules[key] else { continue }
                        try await self.fireDue(&schedule)
                        schedules[key] = schedule
                    }
                } catch is CancellationError where Task.isCancelled {
                    // This task was cancelled: the role is stopping. (A CancellationError from a
                    // dependency while it goes on is a failure like any other, retried below.)
                    return
                } catch {
                    self.logger.warning("the cron clock failed; retrying", metadata: ["error": "\(error)"])
                    loadedAt = .now - .seconds(3600)
                }
                try? await Task.sleep(for: self.interval)
            }
        }
    }

    /// Hands over every fire time that came, as the misfire policy says.
    func fireDue(_ schedule: inout Schedule) async throws {
        let now = self.now()
        let threshold = Double(misfireThreshold.components.seconds)
        let cutoff = now.addingTimeInterval(-threshold)
        var missed: (first: Date, latest: Date)?
        if let next = schedule.next, next < cutoff {
            // Down for a while: the fire times before the cutoff are misfires; of them only the
            // latest matters (found without walking every one, which for a trigger firing each
            // second after a day away would be 86,400 steps).
            let latest = schedule.expression.latest(notAfter: cutoff, from: next, in: schedule.zone)
            missed = latest.map { (next, $0) }
            schedule.next = schedule.expression.next(after: latest ?? cutoff, in: schedule.zone)
        }
        // On-time runs first: another scheduler that reads the trigger's last receipt meanwhile
        // then finds no gap, rather than a gap of its own.
        while let next = schedule.next, next <= now {
            try await fire(schedule, at: next, late: false)
            schedule.next = schedule.expression.next(after: next, in: schedule.zone)
        }
        if let missed {
            if schedule.fireOnce {
                try await fire(schedule, at: missed.latest, late: true, missedSince: missed.first)
            } else {
                logger.notice("cron fire times missed by more than the misfire threshold were skipped", metadata: [
                    "pipeline.id": "\(schedule.pipelineID)", "trigger": "\(schedule.index)", "last.missed": "\(missed.latest)"])
            }
        }
    }

    func fire(_ schedule: Schedule, at time: Date, late: Bool, missedSince: Date? = nil) async throws {
        let firing = CronFiring(pipelineID: schedule.pipelineID, triggerIndex: schedule.index, triggerKey: schedule.key,
                                expression: schedule.expression.text, timeZone: schedule.zoneName, scheduledAt: time, late: late, missedSince: missedSince)
        let delivery = Delivery(origin: .cron(firing), payload: .object([:]), eventID: UUID().uuidString.lowercased(), dedupeKey: firing.dedupeKey)
        _ = try await intake.receive(delivery, body: [], proof: Signatures.Proof(), headers: [:], sender: "scheduler")
    }

    /// The enabled cron triggers now; a trigger already followed keeps its place, a new one
    /// starts after its last receipt (or now, when it never fired).
    func reload(_ current: [String: Schedule]) async throws -> [String: Schedule] {
        var schedules: [String: Schedule] = [:]
        let probe = try JSONText(encoding: JSONValue.array([["type": "cron"]])).text
        var rows: [(String, String)] = []
        do {
            for try await row in try await client.query("""
                SELECT pipeline_id, config::text FROM pipeline_configs
                 WHERE NOT deleted AND NOT disabled AND config->'triggers' @> \(probe)::jsonb
                """, logger: logger).decode((String, String).self) { rows.append(row) }
        } catch {
            throw DatabaseError.wrapping(error, doing: "read the cron triggers")
        }
        for (pipelineID, text) in rows {
            let config = try JSONText(text).decode(JSONValue.self)
            for (index, trigger) in (config["triggers"]?.arrayValue ?? []).enumerated() {
                guard trigger["type"] == "cron", trigger["enabled"]?.boolValue == true, let text = trigger["cronExpression"]?.stringValue else { continue }
                let key = trigger["id"]?.stringValue ?? String(index)
                let zoneName = trigger["timeZone"]?.stringValue ?? defaultZone
                guard let expression = try? CronExpression(text, hashKey: "\(pipelineID)/\(key)"), let zone = TimeZone(identifier: zoneName) else { continue }
                let id = "\(pipelineID)/\(key)"
                if let known = current[id], known.expression == expression, known.zone == zone, known.index == index {
                    schedules[id] = known
                    continue
                }
                let from = try await lastFired(pipelineID: pipelineID, key: key) ?? now()
                schedules[id] = Schedule(pipelineID: pipelineID, index: index, key: key, expression: expression, zone: zone, zoneName: zoneName,
                                         fireOnce: trigger["misfire"]?.stringValue == "fireOnce", next: expression.next(after: from, in: zone))
            }
        }
        return schedules
    }

    /// The latest fire time of the trigger found in the log.
    func lastFired(pipelineID: String, key: String) async throws -> Date? {
        do {
            for try await epoch in try await client.query("""
                SELECT max((payload->'origin'->>'scheduledEpoch')::double precision) FROM events
                 WHERE event_type = \(TriggerIntake.receivedType) AND payload->'origin'->>'kind' = 'cron'
                   AND payload->'origin'->>'pipelineId' = \(pipelineID) AND payload->'origin'->>'triggerKey' = \(key)
                """, logger: logger).decode(Double?.self) {
                return epoch.map { Date(timeIntervalSince1970: $0) }
            }
        } catch {
            throw DatabaseError.wrapping(error, doing: "find a cron trigger's last fire time")
        }
        return nil
    }
}
