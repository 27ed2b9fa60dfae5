import CElasticSEV
import ElasticCrypto
import Glibc
import Testing

@testable import ElasticPlatform

/// The simulator rows of docs/platform.md §1–§3 that the key-selection, chip-binding and
/// report-version work relies on, each checked through the client ELASTIC uses.
@Suite struct SimulatorFidelityTests {
    func make(_ body: (inout SNPSimulator.State) throws -> Void = { _ in }) throws -> (SNPSimulator, SNPGuest) {
        var s = try SNPSimulator.State.fresh()
        try body(&s)
        let sim = SNPSimulator(state: s)
        return (sim, SNPGuest(transport: sim))
    }

    func key(_ g: SNPGuest, _ root: SNPRootKey, fields: GuestFieldSelect = [.measurement]) throws -> [UInt8] {
        try g.derivedKey(SNPDerivedKeyRequest(rootKey: root, fields: fields, vmpl: 0)).withUnsafeBytes { Array($0) }
    }

    func status(_ g: SNPGuest, _ r: SNPDerivedKeyRequest) -> UInt32? {
        do {
            _ = try g.derivedKey(r)
            return nil
        } catch SEVError.firmware(let s) { return s } catch { return 0xdead }
    }

    @Test func keySelectionPicksTheRootAndTheDefaultPrefersAnInstalledVLEK() throws {
        let (sim, g) = try make()
        // Without a VLEK the firmware default is the VCEK; asking for a VLEK is INVALID_KEY.
        #expect(try key(g, .firmwareDefault) == key(g, .vcek))
        #expect(status(g, SNPDerivedKeyRequest(rootKey: .vlek, fields: [], vmpl: 0)) == 0x27)
        let vcekKey = try key(g, .vcek)
        // The host installs a VLEK: the default silently changes root, an explicit VCEK does not.
        var s = sim.state
        try s.installVLEK()
        let (_, withVLEK) = try make { $0 = s }
        #expect(try key(withVLEK, .vcek) == vcekKey, "explicit VCEK: the same key as before")
        #expect(try key(withVLEK, .firmwareDefault) == key(withVLEK, .vlek))
        #expect(try key(withVLEK, .vlek) != vcekKey)
        // Reports are then signed with the VLEK (SIGNING_KEY 1).
        let r = try withVLEK.report(reportData: Array(repeating: 1, count: 64), vmpl: 0)
        let vlek = try s.vlek()
        #expect(r.signingKey == 1 && vlek.verify(r.signedBytes, r: r.signature.r, s: r.signature.s))
        #expect(try SNPSealing.resolvedDefaultRoot(guest: withVLEK, vmpl: 0) == .vlek)
        #expect(try SNPSealing.resolvedDefaultRoot(guest: g, vmpl: 0) == .vcek)
        // A VCEK disabled for the guest: KEY_SEL 1 is INVALID_KEY.
        let (_, noVCEK) = try make { $0.vcekDisabled = true }
        #expect(status(noVCEK, SNPDerivedKeyRequest(rootKey: .vcek, fields: [], vmpl: 0)) == 0x27)
    }

    @Test func checksRunInTheFirmwaresOrder() throws {
        // A masked chip key is reported before anything else, even reserved bits.
        let (sim, _) = try make { $0.maskChipKey = true }
        var raw = SNPDerivedKeyRequest(rootKey: .vcek, fields: [], vmpl: 0).raw
        raw.rsvd = 1
        #expect(rawKeyStatus(sim, raw) == 0x27)
        // The VMRK is not the chip key: masking does not touch it, and KEY_SEL is not looked at.
        raw = SNPDerivedKeyRequest(rootKey: .vmrk, fields: [], vmpl: 0).raw
        raw.root_key_select |= 3 << 1
        #expect(rawKeyStatus(sim, raw) == 0)
        // No upper bound on VMPL: only "at or above the guest's".
        let (_, g) = try make()
        #expect(status(g, SNPDerivedKeyRequest(fields: [], vmpl: 7)) == nil)
    }

    @Test func reportsCarryChipIDCPUIDAndTheTCBsTheFirmwareSets() throws {
        let (sim, g) = try make {
            $0.currentTCB = 0x1600_0000_0000_0405
            $0.committedTCB = 0x1500_0000_0000_0304
        }
        var r = try g.report(reportData: Array(repeating: 0, count: 64), vmpl: 0)
        #expect(r.version == 3 && r.cpuFamily == 0x19 && r.tcbLayout == .milanGenoa)
        #expect(r.chipID == sim.state.chipID && r.chipID.contains { $0 != 0 })
        #expect(r.currentTCB.raw == 0x1600_0000_0000_0405 && r.committedTCB.raw == 0x1500_0000_0000_0304)
        #expect(r.launchTCB.raw == 0x1500_0000_0000_0304, "launch TCB: the current TCB when the VM started")
        try sim.relaunch()
        r = try g.report(reportData: Array(repeating: 0, count: 64), vmpl: 0)
        #expect(r.launchTCB.raw == 0x1600_0000_0000_0405)
        // Masked CHIP_ID: zeros. Turin: only the first 8 bytes, and its TCB layout.
        let (_, masked) = try make { $0.maskChipID = true }
        #expect(try masked.report(reportData: Array(repeating: 0, count: 64), vmpl: 0).chipID.allSatisfy { $0 == 0 })
        let (turinSim, turin) = try make { $0.cpuFamily = 0x1A }
        let t = try turin.report(reportData: Array(repeating: 0, count: 64), vmpl: 0)
        #expect(
            t.tcbLayout == .turin && t.chipID[8...].allSatisfy { $0 == 0 }
                && t.chipID[..<8] == turinSim.state.chipID[..<8])
        // Version 2 has no CPUID fields; 5 is read too; anything else is refused.
        let (_, v2) = try make { $0.reportVersion = 2 }
        #expect(try v2.report(reportData: Array(repeating: 0, count: 64), vmpl: 0).cpuFamily == nil)
        let (_, v5) = try make { $0.reportVersion = 5 }
        #expect(try v5.report(reportData: Array(repeating: 0, count: 64), vmpl: 0).version == 5)
        let (_, v9) = try make { $0.reportVersion = 9 }
        #expect(throws: SEVError.self) { try v9.report(reportData: Array(repeating: 0, count: 64), vmpl: 0) }
    }

    @Test func tcbLayoutsDecodeByChipGeneration() {
        // bytes (little-endian): 0x04 0x03 0x00 0x00 0x00 0x00 0x15 0x16
        let raw: UInt64 = 0x1615_0000_0000_0304
        let genoa = TCBVersion(raw: raw, layout: .milanGenoa)
        #expect(
            genoa.bootloader == 4 && genoa.tee == 3 && genoa.snp == 0x15 && genoa.microcode == 0x16 && genoa.fmc == nil)
        let turin = TCBVersion(raw: raw, layout: .turin)
        #expect(turin.fmc == 4 && turin.bootloader == 3 && turin.tee == 0 && turin.snp == 0 && turin.microcode == 0x16)
        #expect(genoa.reservedBytes == 0 && turin.reservedBytes == 0x15_0000, "byte 6 is reserved on Turin")
        #expect(
            TCBVersion(raw: 0x0100_0000_0000_0000, layout: .turin).isAtMost(
                TCBVersion(raw: 0x0200_0000_0000_0001, layout: .turin)))
        #expect(
            !TCBVersion(raw: 0x0000_0000_0000_0002, layout: .turin).isAtMost(
                TCBVersion(raw: 0x0100_0000_0000_0001, layout: .turin)),
            "FMC counts on Turin")
    }

    @Test func turinKeyRequestsCheckTurinsReservedBytes() throws {
        let (sim, g) = try make {
            $0.cpuFamily = 0x1A
            $0.committedTCB = 0x1800_0000_1503_0201
            $0.reportedTCB = 0x1800_0000_1503_0201
        }
        #expect(
            status(g, SNPDerivedKeyRequest(fields: [.tcbVersion], vmpl: 0, tcbVersion: sim.state.committedTCB)) == nil)
        // Byte 4 is reserved on Turin (it is not on Genoa).
        #expect(
            status(
                g, SNPDerivedKeyRequest(fields: [.tcbVersion], vmpl: 0, tcbVersion: sim.state.committedTCB | 1 << 32))
                == 0x16)
    }

    @Test func aBusyHostAndAnExhaustedSequenceEndTheDeviceDifferently() throws {
        let (sim, g) = try make()
        _ = try key(g, .vcek)
        var s = sim.state
        s.hostBusy = true
        let busySim = SNPSimulator(state: s)
        let busy = SNPGuest(transport: busySim)
        #expect(throws: SEVError.self) { try busy.derivedKey(SNPDerivedKeyRequest(fields: [], vmpl: 0)) }
        #expect(busySim.state.vmpckDisabled, "the kernel wipes the VMPCK after a minute of BUSY")
        s.hostBusy = false
        s.sequence = UInt64(UInt32.max) - 1
        let spent = SNPSimulator(state: s)
        #expect(throws: SEVError.ioctl(.ioError, firmware: 0xff, vmm: 0)) {
            try SNPGuest(transport: spent).derivedKey(SNPDerivedKeyRequest(fields: [], vmpl: 0))
        }
        #expect(!spent.state.vmpckDisabled)
    }

    @Test func aVCEKSlotNamesTheChipItWasSealedOn() throws {
        let (sim, g) = try make()
        let p = try SNPSealing.parameters(guest: g, vmpl: 0)
        #expect(p.rootKey == .vcek && p.chipID == sim.state.chipID)
        _ = try SNPSealing.derive(guest: g, p)
        var moved = sim.state
        try moved.moveToAnotherChip()
        let (_, elsewhere) = try make { $0 = moved }
        do {
            _ = try SNPSealing.derive(guest: elsewhere, p)
            Issue.record("another chip must not open a VCEK slot")
        } catch let e as SEVError {
            #expect("\(e)".contains("sealed on chip \(Hex.encode(p.chipID!.prefix(8)))"), "\(e)")
        }
        // VLEK and VMRK slots record no chip.
        #expect(try SNPSealing.parameters(guest: g, vmpl: 0, root: .vmrk).chipID == nil)
    }

}

/// Extended reports: the host's certificate table and the kernel's length-retry protocol.
@Suite struct ExtendedReportTests {
    let vcekGUID = "63da758d-e664-4564-adc5-f4b93be8accd"
    let askGUID = "4ab7b379-bbac-4fe4-a02f-05aef327c782"

    @Test func theCertificateTableRoundTripsAndRefusesHostileEntries() throws {
        let table = SNPCertificateTable(entries: [
            .init(guid: vcekGUID, der: [1, 2, 3]), .init(guid: askGUID, der: Array(repeating: 9, count: 100)),
        ])
        let parsed = try SNPCertificateTable(parsing: table.encoded + Array(repeating: 0, count: 50))
        #expect(parsed == table && parsed.certificate("vcek") == [1, 2, 3] && parsed.entries[1].name == "ask")
        // The GHCB layout: the GUID's first three fields little-endian.
        #expect(Array(table.encoded.prefix(4)) == [0x8d, 0x75, 0xda, 0x63])
        #expect(try SNPCertificateTable(parsing: Array(repeating: 0, count: 4096)).entries.isEmpty)
        var bad = table.encoded
        bad[16] = 0xff  // offset of the first entry beyond the buffer
        bad[17] = 0xff
        #expect(throws: SEVError.self) { try SNPCertificateTable(parsing: bad) }
        #expect(throws: SEVError.self) { try SNPCertificateTable(parsing: Array(table.encoded.prefix(30))) }
    }

    @Test func attestationEvidenceCarriesTheCertificateTable() throws {
        var s = try SNPSimulator.State.fresh()
        s.hostCertificates = [.init(guid: vcekGUID, der: [4, 2])]
        let sim = SNPSimulator(state: s)
        let provider = SNPAttestationProvider(guest: SNPGuest(transport: sim), vmpl: 0, simulated: true)
        let e = try provider.evidence(reportData: Array(repeating: 3, count: 64))
        #expect(e.platform == 2 && SNPReport(bytes: e.report).reportData == Array(repeating: 3, count: 64))
        #expect(try SNPCertificateTable(parsing: e.certificates).certificate("vcek") == [4, 2])
    }

    @Test func aSmallBufferIsRetriedWithTheSizeTheHostAsksFor() throws {
        var s = try SNPSimulator.State.fresh()
        let plainGuest = SNPGuest(transport: SNPSimulator(state: s))
        let none = try plainGuest.extendedReport(reportData: Array(repeating: 5, count: 64), vmpl: 0)
        #expect(none.certificates.entries.isEmpty && none.report.reportData == Array(repeating: 5, count: 64))
        // 6 KiB of certificates: more than the first page.
        s.hostCertificates = [
            .init(guid: vcekGUID, der: Array(repeating: 1, count: 1300)),
            .init(guid: askGUID, der: Array(repeating: 2, count: 5000)),
        ]
        let sim = SNPSimulator(state: s)
        let g = SNPGuest(transport: sim)
        let r = try g.extendedReport(reportData: Array(repeating: 6, count: 64), vmpl: 0)
        #expect(r.certificates.certificate("vcek") == Array(repeating: 1, count: 1300))
        #expect(r.certificates.certificate("ask")?.count == 5000)
        #expect(!sim.state.vmpckDisabled, "INVALID_LEN leaves the device usable")
        // The kernel's own checks: a length that is not whole pages, or above 16 KiB.
        for len: UInt32 in [100, 20480] {
            var req = snp_ext_report_req()
            var resp = snp_report_resp()
            var certs = [UInt8](repeating: 0, count: Int(len))
            var io = snp_guest_request_ioctl()
            io.msg_version = 1
            let rc = certs.withUnsafeMutableBytes { c in
                req.certs_address = UInt64(UInt(bitPattern: c.baseAddress))
                req.certs_len = len
                return withUnsafeMutablePointer(to: &req) { rq in
                    withUnsafeMutablePointer(to: &resp) { rs in
                        io.req_data = UInt64(UInt(bitPattern: rq))
                        io.resp_data = UInt64(UInt(bitPattern: rs))
                        return sim.request(SNPIoctl.getExtReport, &io)
                    }
                }
            }
            #expect(rc == EINVAL, "certs_len \(len)")
        }
    }
}

/// configfs-tsm through the simulated SEV provider, and the checks ELASTIC makes on the way.
@Suite struct ConfigfsTSMTests {
    /// Another process writes the same entry's inblob right after ours.
    final class Interloper: TSMReportTransport {
        let inner: SimulatedTSM
        init(_ inner: SimulatedTSM) { self.inner = inner }
        func makeEntry(_ name: String) throws { try inner.makeEntry(name) }
        func removeEntry(_ name: String) { inner.removeEntry(name) }
        func write(_ entry: String, _ attribute: String, _ value: [UInt8]) throws {
            try inner.write(entry, attribute, value)
            if attribute == "inblob" { try inner.write(entry, "inblob", Array(repeating: 0xEE, count: 64)) }
        }
        func read(_ entry: String, _ attribute: String) throws -> [UInt8]? { try inner.read(entry, attribute) }
    }

    @Test func reportsCarryTheInblobAndTheHostsCertificates() throws {
        var s = try SNPSimulator.State.fresh()
        s.hostCertificates = [.init(guid: "63da758d-e664-4564-adc5-f4b93be8accd", der: [7, 7, 7])]
        let sim = SNPSimulator(state: s)
        let tsm = SimulatedTSM(simulator: sim)
        let data = (0..<64).map { UInt8($0) }
        let r = try ConfigfsTSM.report(tsm, inblob: data)
        #expect(r.provider == "sev_guest" && r.outblob.count == SNPReport.size)
        let report = SNPReport(bytes: r.outblob)
        try report.checkFormat()
        #expect(report.reportData == data)
        #expect(try SNPCertificateTable(parsing: r.auxblob).certificate("vcek") == [7, 7, 7])
        #expect(throws: TSMError.refused("inblob", .invalidArgument)) {
            try ConfigfsTSM.report(tsm, inblob: [1, 2, 3])
        }
        #expect(throws: TSMError.raced) { try ConfigfsTSM.report(Interloper(tsm), inblob: data) }
    }

    @Test func privilegeLevelsFollowTheFloor() throws {
        var s = try SNPSimulator.State.fresh()
        s.currentVMPL = 1
        let tsm = SimulatedTSM(simulator: SNPSimulator(state: s))
        let data = [UInt8](repeating: 1, count: 64)
        #expect(throws: TSMError.refused("privlevel", .invalidArgument)) {
            try ConfigfsTSM.report(tsm, inblob: data, privlevel: 0)
        }
        // The provider's default (0) is below the floor: the firmware refuses, the kernel says EINVAL.
        #expect(throws: TSMError.refused("outblob", .invalidArgument)) { try ConfigfsTSM.report(tsm, inblob: data) }
        #expect(SNPReport(bytes: try ConfigfsTSM.report(tsm, inblob: data, privlevel: 1).outblob).vmpl == 1)
    }

    @Test func withoutTheKernelInterfaceItSaysSo() {
        #expect(throws: TSMError.self) { try ConfigfsTSMDirectory(root: "/nonexistent/tsm/report") }
    }
}

/// TDX evidence: a Quote through configfs-tsm when its provider is TDX's.
@Suite struct TDXEvidenceTests {
    /// configfs-tsm as a TDX guest's kernel shows it: any inblob, a "Quote" that embeds it.
    final class TDXQuotes: TSMReportTransport {
        let provider: String
        var inblob: [UInt8] = []
        var generation: UInt64 = 0
        init(provider: String) { self.provider = provider }
        func makeEntry(_ name: String) throws {}
        func removeEntry(_ name: String) {}
        func write(_ entry: String, _ attribute: String, _ value: [UInt8]) throws {
            inblob = value
            generation += 1
        }
        func read(_ entry: String, _ attribute: String) throws -> [UInt8]? {
            switch attribute {
            case "provider": return Array((provider + "\n").utf8)
            case "generation": return Array("\(generation)\n".utf8)
            case "outblob": return Array("QUOTE".utf8) + inblob
            default: return nil
            }
        }
    }

    @Test func aQuoteWhenConfigfsTSMIsTDXsAndTheTDREPORTOtherwise() throws {
        let data = [UInt8](repeating: 0x42, count: 64)
        let quoting = TDXAttestationProvider(fd: -1, tsm: TDXQuotes(provider: "tdx_guest"))
        let e = try quoting.evidence(reportData: data)
        #expect(e.platform == TDXAttestationProvider.platformQuote && e.report == Array("QUOTE".utf8) + data)
        // Another provider (or none): the TDREPORT from the device, which here is absent.
        let other = TDXAttestationProvider(fd: -1, tsm: TDXQuotes(provider: "sev_guest"))
        #expect(throws: TDXError.ioctl(.badFileDescriptor)) { try other.evidence(reportData: data) }
        #expect(throws: TDXError.badReportData) { try quoting.evidence(reportData: [1]) }
    }
}

/// SEV-SNP evidence when the kernel refuses SNP_GET_EXT_REPORT: configfs-tsm's `sev_guest`
/// provider gives the report (`outblob`) and the host's certificate table (`auxblob`).
@Suite struct SNPEvidenceFallbackTests {
    /// The simulator behind a kernel that does not know SNP_GET_EXT_REPORT (ENOTTY).
    final class NoExtendedReport: SEVGuestTransport {
        let inner: SNPSimulator
        init(_ inner: SNPSimulator) { self.inner = inner }
        func request(_ cmd: UInt, _ ioctl: inout snp_guest_request_ioctl) -> Int32 {
            cmd == SNPIoctl.getExtReport ? ENOTTY : inner.request(cmd, &ioctl)
        }
    }

    @Test func configfsTSMTakesOverWhenTheIoctlIsRefused() throws {
        var s = try SNPSimulator.State.fresh()
        _ = try s.installCertificateChain()
        let sim = SNPSimulator(state: s)
        let data = [UInt8](repeating: 0x33, count: 64)
        let without = SNPAttestationProvider(
            guest: SNPGuest(transport: NoExtendedReport(sim)), vmpl: 0, simulated: true)
        #expect(throws: SEVError.refusedIoctl) { try without.evidence(reportData: data) }
        let with = SNPAttestationProvider(
            guest: SNPGuest(transport: NoExtendedReport(sim)), vmpl: 0, simulated: true,
            tsm: SimulatedTSM(simulator: sim))
        let e = try with.evidence(reportData: data)
        #expect(SNPReport(bytes: e.report).reportData == data)
        let table = try SNPCertificateTable(parsing: e.certificates)
        #expect(table.certificate("vcek") != nil && table.certificate("ask") != nil && table.certificate("ark") != nil)
        // The ioctl, where the kernel has it, gives the same certificates.
        let direct = try SNPAttestationProvider(guest: SNPGuest(transport: sim), vmpl: 0, simulated: true).evidence(
            reportData: data)
        #expect(direct.certificates == e.certificates)
    }
}
