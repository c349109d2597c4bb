import Testing
@testable import Clouds

@Suite("Frigga names: clusters and server groups")
struct FriggaTests {
    @Test func namesReadAndWrite() throws {
        let full = try #require(ServerGroupName(parsing: "shop-prod-canary-v007"))
        #expect(full == ServerGroupName(application: "shop", stack: "prod", detail: "canary", sequence: 7))
        #expect(full.cluster == "shop-prod-canary" && full.description == "shop-prod-canary-v007")
        #expect(ServerGroupName(parsing: "shop")?.cluster == "shop")
        #expect(ServerGroupName(parsing: "shop-v002") == ServerGroupName(application: "shop", sequence: 2))
        #expect(ServerGroupName(parsing: "shop--canary-v001")?.detail == "canary", "a detail without a stack")
        #expect(ServerGroupName(application: "shop", detail: "canary").cluster == "shop--canary")
        #expect(ServerGroupName(parsing: "shop-prod-a-b-v010")?.detail == "a-b", "a detail may hold dashes")
        #expect(ServerGroupName(parsing: "-prod") == nil && ServerGroupName(parsing: "sh op") == nil)
        #expect(ServerGroupName(parsing: "shop-v12")?.stack == "v12", "v and two digits is a stack, not a sequence")
    }

    @Test func theNextSequenceFollowsTheHighestAndWraps() {
        let cluster = ServerGroupName(application: "shop", stack: "prod")
        #expect(ServerGroupName.next(in: cluster, existing: []).description == "shop-prod-v000")
        #expect(ServerGroupName.next(in: cluster, existing: ["shop-prod-v003", "shop-prod-v001", "shop-v009", "shop-prod-x-v008"]).description == "shop-prod-v004")
        #expect(ServerGroupName.next(in: cluster, existing: ["shop-prod-v999", "shop-prod-v000"]).description == "shop-prod-v001", "after 999, the lowest free")
    }

    @Test func capacityIsChecked() {
        #expect(Capacity(min: 1, max: 3, desired: 2).problem == nil)
        #expect(Capacity(min: 2, max: 3, desired: 1).problem?.contains("min ≤ desired ≤ max") == true)
        #expect(Capacity(min: 0, max: 101, desired: 1).problem?.contains("100") == true)
    }
}

@Suite("Clouds: what a pipeline author writes cannot reach podman's flags or HAProxy's commands")
struct CloudInputTests {
    static func spec(stack: String? = "web", image: String = "localhost/shop:1", balancers: [String] = []) -> ServerGroupSpec {
        ServerGroupSpec(name: ServerGroupName(application: "shop", stack: stack, sequence: 0), region: "local", image: image,
                        capacity: Capacity(min: 1, max: 1, desired: 1), loadBalancers: balancers)
    }

    @Test func specsAreChecked() {
        #expect(Self.spec().problem == nil)
        #expect(Self.spec(stack: "web\nshutdown frontend public").problem?.contains("stack") == true)
        #expect(Self.spec(image: "--privileged").problem?.contains("image") == true)
        #expect(Self.spec(image: "shop:1 --volume=/:/host").problem?.contains("image") == true)
        #expect(Self.spec(balancers: ["../../etc"]).problem?.contains("load balancer") == true)
        #expect(Self.spec(balancers: ["web"]).problem == nil)
    }

    @Test func loadBalancerNamesAndHealthChecksAreChecked() {
        #expect(HAProxy.problem(name: "web-1") == nil && HAProxy.problem(name: "a/b") != nil && HAProxy.problem(name: "") != nil)
        #expect(HAProxy.problem(healthCheck: "/health?deep=1") == nil)
        #expect(HAProxy.problem(healthCheck: "/\n    external-check command /bin/sh") != nil, "a newline would write HAProxy configuration")
        #expect(HAProxy.problem(healthCheck: "health") != nil && HAProxy.problem(healthCheck: "/a b") != nil)
    }
}
