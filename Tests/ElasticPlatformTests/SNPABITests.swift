import CElasticSEV
import CElasticTDX
import ElasticCrypto
import Glibc
import Testing

@testable import ElasticPlatform

@Suite struct SNPABITests {
    /// Sizes and ioctl numbers against the kernel header (also _Static_assert'ed in sev.c).
    /// TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req), 1088 bytes (docs/platform.md §6.1).
    @Test func tdxReportABIIsPinned() {
        #expect(MemoryLayout<celastic_tdx_report_req>.size == 1088)
        #expect(CElasticTDX_TDX_CMD_GET_REPORT0 == 0xC440_5401)
    }

    @Test func structSizesAndIoctlNumbers() {
        #expect(MemoryLayout<snp_guest_request_ioctl>.size == 32)
        #expect(MemoryLayout<snp_derived_key_req>.size == 32)
        #expect(MemoryLayout<snp_derived_key_resp>.size == 64)
        #expect(MemoryLayout<snp_report_req>.size == 96)
        #expect(MemoryLayout<snp_report_resp>.size == 4000)
        #expect(MemoryLayout<snp_guest_request_ioctl>.offset(of: \.req_data) == 8)
        #expect(MemoryLayout<snp_guest_request_ioctl>.offset(of: \.resp_data) == 16)
        var io = snp_guest_request_ioctl()
        io.exitinfo2 = 0x0102_0304_0506_0708  // the union at offset 24: fw_error low, vmm_error high
        let bytes = withUnsafeBytes(of: &io) { Array($0) }
        #expect(Array(bytes[24..<32]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(io.fw_error == 0x0506_0708 && io.vmm_error == 0x0102_0304)
        #expect(SNPIoctl.getReport == 0xC020_5300)
        #expect(SNPIoctl.getDerivedKey == 0xC020_5301)
        #expect(SNPIoctl.getExtReport == 0xC020_5302)
    }

    @Test func derivedKeyRequestEncodesByteByByte() {
        var raw = SNPDerivedKeyRequest(
            rootKey: .vmrk, fields: [.measurement, .guestPolicy, .tcbVersion], vmpl: 2, guestSVN: 7,
            tcbVersion: 0x1122_3344_5566_7788
        ).raw
        let bytes = withUnsafeBytes(of: &raw) { Array($0) }
        #expect(
            bytes == [
                1, 0, 0, 0, 0, 0, 0, 0,
                0x29, 0, 0, 0, 0, 0, 0, 0,
                2, 0, 0, 0, 7, 0, 0, 0,
                0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
            ])
        #expect(
            SNPDerivedKeyRequest(raw)
                == SNPDerivedKeyRequest(
                    rootKey: .vmrk, fields: [.measurement, .guestPolicy, .tcbVersion], vmpl: 2, guestSVN: 7,
                    tcbVersion: 0x1122_3344_5566_7788))
    }
}

/// The simulator against docs/platform.md §8, through the same client ELASTIC uses.
@Suite struct SimulatorConformanceTests {
    func make(_ body: (inout SNPSimulator.State) -> Void = { _ in }) throws -> (SNPSimulator, SNPGuest) {
        var s = try SNPSimulator.State.fresh()
        body(&s)
        let sim = SNPSimulator(state: s)
        return (sim, SNPGuest(transport: sim))
    }

    func key(_ g: SNPGuest, _ r: SNPDerivedKeyRequest) throws -> [UInt8] {
        try g.derivedKey(r).withUnsafeBytes { Array($0) }
    }

    let base = SNPDerivedKeyRequest(fields: [.measurement, .guestPolicy], vmpl: 0)

    @Test func sameInputsSameKey() throws {
        let (sim, g) = try make()
        let k = try key(g, base)
        let again = try key(g, base)
        #expect(k.count == 32 && k == again)
        let other = try key(SNPGuest(transport: SNPSimulator(state: sim.state)), base)
        #expect(k == other)
    }

    @Test func alwaysMixedAndSelectedFieldsChangeTheKey() throws {
        let (sim, g) = try make()
        let k = try key(g, base)
        var changes: [(String, (inout SNPSimulator.State) -> Void)] = []
        changes.append(("host data", { $0.hostData[0] ^= 1 }))
        changes.append(("id key digest", { $0.idKeyDigest[0] ^= 1 }))
        changes.append(("measurement (selected)", { $0.measurement[0] ^= 1 }))
        changes.append(("policy (selected)", { $0.policy ^= 1 << 16 }))
        changes.append(("chip", { $0.chipSeed[0] ^= 1 }))
        changes.append(("reported TCB (no TCB bit)", { $0.reportedTCB += 1 << 56 }))
        for (what, change) in changes {
            var s = sim.state
            change(&s)
            #expect(try key(SNPGuest(transport: SNPSimulator(state: s)), base) != k, "\(what)")
        }
        #expect(try key(g, SNPDerivedKeyRequest(fields: [.measurement, .guestPolicy], vmpl: 1)) != k, "VMPL")
        #expect(try key(g, SNPDerivedKeyRequest(fields: [.measurement], vmpl: 0)) != k, "field select value")
        #expect(
            try key(g, SNPDerivedKeyRequest(rootKey: .vmrk, fields: [.measurement, .guestPolicy], vmpl: 0)) != k, "root"
        )
    }

    @Test func unselectedFieldsDoNotChangeTheKey() throws {
        let (sim, g) = try make()
        let k = try key(g, base)
        var s = sim.state
        s.imageID[0] ^= 1
        s.familyID[0] ^= 1
        s.vmrk[0] ^= 1
        #expect(try key(SNPGuest(transport: SNPSimulator(state: s)), base) == k)
    }

    @Test func tcbSelectedKeysDependOnlyOnTheRequestedTCB() throws {
        let (sim, g) = try make()
        let req = SNPDerivedKeyRequest(
            fields: [.measurement, .tcbVersion], vmpl: 0, tcbVersion: sim.state.committedTCB)
        let k = try key(g, req)
        var s = sim.state
        s.reportedTCB += 1 << 56
        s.committedTCB += 1 << 56  // an upgrade: the old TCB's key is still derivable
        #expect(try key(SNPGuest(transport: SNPSimulator(state: s)), req) == k)
    }

    @Test func vmrkChangesOnRelaunch() throws {
        let (sim, g) = try make()
        let req = SNPDerivedKeyRequest(rootKey: .vmrk, fields: [], vmpl: 0)
        let k = try key(g, req)
        try sim.relaunch()
        #expect(try key(g, req) != k)
    }

    @Test func parameterErrorsAreStatusWordsNotErrnos() throws {
        let (sim, g) = try make { $0.currentVMPL = 1 }
        func status(_ r: SNPDerivedKeyRequest) -> UInt32? {
            do {
                _ = try g.derivedKey(r)
                return nil
            } catch SEVError.firmware(let s) { return s } catch { return 0xdead }
        }
        #expect(status(SNPDerivedKeyRequest(fields: [], vmpl: 0)) == 0x16, "VMPL below the guest's")
        #expect(
            status(SNPDerivedKeyRequest(fields: GuestFieldSelect(rawValue: 1 << 7), vmpl: 1)) == 0x16,
            "undefined field bit")
        #expect(
            status(SNPDerivedKeyRequest(fields: [.tcbVersion], vmpl: 1, tcbVersion: sim.state.committedTCB + (1 << 56)))
                == 0x16, "TCB above committed")
        #expect(
            status(SNPDerivedKeyRequest(fields: [.tcbVersion], vmpl: 1, tcbVersion: sim.state.committedTCB | 1 << 20))
                == 0x16, "TCB reserved byte")
        #expect(
            status(SNPDerivedKeyRequest(fields: [.guestSVN], vmpl: 1, guestSVN: 1)) == 0x16, "SVN above the ID block's")
        #expect(status(SNPDerivedKeyRequest(fields: [], vmpl: 1)) == nil, "a valid request")
        var raw = SNPDerivedKeyRequest(fields: [], vmpl: 1).raw
        raw.root_key_select = 3 << 1  // KEY_SEL reserved
        #expect(rawKeyStatus(sim, raw) == 0x27)
        raw.root_key_select = 1 << 5  // reserved bits
        #expect(rawKeyStatus(sim, raw) == 0x16)
        raw.root_key_select = 0
        raw.rsvd = 1
        #expect(rawKeyStatus(sim, raw) == 0x16)
        let (_, masked) = try make { $0.maskChipKey = true }
        do {
            _ = try masked.derivedKey(SNPDerivedKeyRequest(fields: [], vmpl: 0))
            Issue.record("masked chip key must fail")
        } catch SEVError.firmware(let s) { #expect(s == 0x27) }
    }

    @Test func messageLevelErrorLocksTheDeviceUntilRelaunch() throws {
        let (sim, g) = try make()
        _ = try g.derivedKey(base)  // the device worked: a later ENOTTY can only mean a wiped VMPCK
        var req = base.raw
        var resp = snp_derived_key_resp()
        var io = snp_guest_request_ioctl()
        io.msg_version = 2  // above the firmware's maximum: a message-level failure
        let rc = withUnsafeMutablePointer(to: &req) { rq in
            withUnsafeMutablePointer(to: &resp) { rs in
                io.req_data = UInt64(UInt(bitPattern: rq))
                io.resp_data = UInt64(UInt(bitPattern: rs))
                return sim.request(SNPIoctl.getDerivedKey, &io)
            }
        }
        #expect(rc == EIO && UInt32(truncatingIfNeeded: io.exitinfo2) == 0x16)
        #expect(throws: SEVError.disabled) { try g.derivedKey(base) }
        // A guest that never got an answer cannot tell a wiped VMPCK from a foreign ABI.
        #expect(throws: SEVError.refusedIoctl) { try SNPGuest(transport: sim).derivedKey(base) }
        io.msg_version = 0
        #expect(sim.request(SNPIoctl.getDerivedKey, &io) == EINVAL)
        try sim.relaunch()
        #expect(throws: Never.self) { try g.derivedKey(base) }
    }

    @Test func reportCarriesTheLaunchFields() throws {
        let (sim, g) = try make()
        let data = (0..<64).map { UInt8($0) }
        let r = try g.report(reportData: data, vmpl: 0)
        #expect(r.bytes.count == 1184)
        #expect(r.reportData == data && r.measurement == sim.state.measurement && r.policy == sim.state.policy)
        #expect(r.committedTCB.raw == sim.state.committedTCB && r.reportedTCB.raw == sim.state.reportedTCB)
        // Signed by the simulated VCEK with ECDSA P-384 over 0x000–0x29F.
        let vcek = try sim.state.vcek()
        #expect(r.signingKey == 0)
        #expect(vcek.verify(r.signedBytes, r: r.signature.r, s: r.signature.s))
        var tampered = r.signedBytes
        tampered[0x90] ^= 1
        #expect(!vcek.verify(tampered, r: r.signature.r, s: r.signature.s))
        // A masked chip key: no signature.
        let (_, masked) = try make { $0.maskChipKey = true }
        let m = try masked.report(reportData: data, vmpl: 0)
        #expect(m.signingKey == 7 && m.bytes[0x2A0..<0x330].allSatisfy { $0 == 0 })
    }
}

/// The STATUS word of a raw MSG_KEY_REQ sent straight through the simulator's ioctl seam
/// (the ioctl itself returns 0).
func rawKeyStatus(_ sim: SNPSimulator, _ raw: snp_derived_key_req) -> UInt32 {
    var req = raw
    var resp = snp_derived_key_resp()
    var io = snp_guest_request_ioctl()
    io.msg_version = 1
    let rc = withUnsafeMutablePointer(to: &req) { rq in
        withUnsafeMutablePointer(to: &resp) { rs in
            io.req_data = UInt64(UInt(bitPattern: rq))
            io.resp_data = UInt64(UInt(bitPattern: rs))
            return sim.request(SNPIoctl.getDerivedKey, &io)
        }
    }
    #expect(rc == 0)
    return withUnsafeBytes(of: &resp) { $0.load(as: UInt32.self) }
}
