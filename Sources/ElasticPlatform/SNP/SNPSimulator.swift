import CElasticSEV
import ElasticCrypto
import ElasticSystem
import Foundation

/// An in-process SEV-SNP firmware and guest driver, behind the same ioctl seam as
/// `/dev/sev-guest` (docs/platform.md §8). Derived keys follow the firmware's construction:
/// NIST SP800-108 counter-mode HMAC-SHA-256 of a root secret over the 168-byte mix structure.
/// Its state (launch fields, TCBs, secrets, the VMPCK lock-out) lives in a JSON file so the
/// binaries can share it. For tests and demos only: refused where a real SNP guest device exists.
public final class SNPSimulator: SEVGuestTransport {
    /// Simulated platform and launch state.
    public struct State: Codable, Equatable, Sendable {
        public var chipSeed: [UInt8]
        public var vmrk: [UInt8]
        public var committedTCB: UInt64
        public var reportedTCB: UInt64
        public var currentVMPL: UInt32 = 0
        public var policy: UInt64 = 0x30000
        public var imageID: [UInt8] = Array(repeating: 0, count: 16)
        public var familyID: [UInt8] = Array(repeating: 0, count: 16)
        public var measurement: [UInt8]
        public var hostData: [UInt8] = Array(repeating: 0, count: 32)
        public var idKeyDigest: [UInt8] = Array(repeating: 0, count: 48)
        public var idBlockSVN: UInt32 = 0
        public var maxMessageVersion: UInt8 = 1
        public var maskChipKey = false
        public var vmpckDisabled = false
        /// The simulated VCEK's P-384 private key (DER), which signs reports.
        public var vcekKeyDER: [UInt8] = []

        /// A fresh platform and launch with random secrets and measurement.
        public static func fresh() throws -> State {
            var s = State(
                chipSeed: try Random.bytes(32), vmrk: try Random.bytes(32),
                committedTCB: 0x1500_0000_0000_0304, reportedTCB: 0x1500_0000_0000_0304,
                measurement: try Random.bytes(48))
            s.vcekKeyDER = try ECDSAP384.generate().privateKeyDER
            return s
        }

        /// The simulated VCEK (signs reports; its public half is what a verifier would fetch).
        public func vcek() throws -> ECDSAP384 { try ECDSAP384(privateKeyDER: vcekKeyDER) }
    }

    public private(set) var state: State
    let stateFile: String?

    public init(state: State, stateFile: String? = nil) {
        self.state = state
        self.stateFile = stateFile
    }

    /// Loads the simulator from its state file.
    public static func load(_ path: String) throws -> SNPSimulator {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SEVError.invalidRequest("cannot read simulator state \(path)")
        }
        do {
            return SNPSimulator(state: try JSONDecoder().decode(State.self, from: data), stateFile: path)
        } catch {
            throw SEVError.invalidRequest("simulator state \(path) is not valid: \(error)")
        }
    }

    /// Writes the state file (0600).
    public func save() throws {
        guard let stateFile else { return }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try enc.encode(state)
        guard FileManager.default.createFile(atPath: stateFile, contents: data, attributes: [.posixPermissions: 0o600])
        else {
            throw SEVError.invalidRequest("cannot write the simulator state \(stateFile)")
        }
    }

    /// Changes the launch state (a new image, policy, TCB, ...) and persists it.
    public func update(_ body: (inout State) -> Void) throws {
        body(&state)
        try save()
    }

    /// A simulated VM restart: a new VMRK, and the VMPCK usable again.
    public func relaunch() throws {
        try update {
            $0.vmrk = (try? Random.bytes(32)) ?? $0.vmrk
            $0.vmpckDisabled = false
        }
    }

    // MARK: The ioctl boundary

    public func request(_ cmd: UInt, _ io: inout snp_guest_request_ioctl) -> Int32 {
        if cmd != SNPIoctl.getDerivedKey && cmd != SNPIoctl.getReport && cmd != SNPIoctl.getExtReport { return ENOTTY }
        if io.msg_version == 0 { return EINVAL }
        if io.req_data == 0 || io.resp_data == 0 {
            io.exitinfo2 = 0xff
            return EINVAL
        }
        if state.vmpckDisabled {
            io.exitinfo2 = 0xff
            return ENOTTY
        }
        if io.msg_version > state.maxMessageVersion {
            // A message-level failure: the kernel wipes the VMPCK.
            io.exitinfo2 = UInt64(SNPFirmwareStatus.invalidParam.rawValue)
            state.vmpckDisabled = true
            try? save()
            return EIO
        }
        let reqPtr = UnsafeRawPointer(bitPattern: UInt(io.req_data))!
        let respPtr = UnsafeMutableRawPointer(bitPattern: UInt(io.resp_data))!
        if cmd == SNPIoctl.getDerivedKey {
            let req = reqPtr.loadUnaligned(as: snp_derived_key_req.self)
            let resp = UnsafeMutableRawBufferPointer(start: respPtr, count: 64)
            resp.initializeMemory(as: UInt8.self, repeating: 0)
            switch deriveKey(req) {
            case .success(let key):
                key.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: resp[0x20..<0x40]).copyMemory(from: $0) }
            case .failure(let status):
                resp.storeBytes(of: status.rawValue.littleEndian, toByteOffset: 0, as: UInt32.self)
            }
            return 0
        }
        let req = reqPtr.loadUnaligned(as: snp_report_req.self)
        let resp = UnsafeMutableRawBufferPointer(start: respPtr, count: 4000)
        resp.initializeMemory(as: UInt8.self, repeating: 0)
        guard req.vmpl >= state.currentVMPL, req.vmpl <= 3 else {
            resp.storeBytes(of: SNPFirmwareStatus.invalidParam.rawValue.littleEndian, toByteOffset: 0, as: UInt32.self)
            return 0
        }
        resp.storeBytes(of: UInt32(SNPReport.size).littleEndian, toByteOffset: 4, as: UInt32.self)
        let report = makeReport(reportData: withUnsafeBytes(of: req.user_data) { Array($0) }, vmpl: req.vmpl)
        UnsafeMutableRawBufferPointer(rebasing: resp[0x20..<(0x20 + SNPReport.size)]).copyBytes(from: report)
        return 0
    }

    /// MSG_KEY_REQ per docs/platform.md §2: parameter checks (STATUS errors), then the KDF.
    func deriveKey(_ req: snp_derived_key_req) -> Result<SecureBytes, SNPFirmwareStatus> {
        let rootSelect = req.root_key_select & 1
        let keySel = (req.root_key_select >> 1) & 3
        if req.root_key_select >> 3 != 0 || req.rsvd != 0 { return .failure(.invalidParam) }
        if keySel == 3 || keySel == 2 { return .failure(.invalidKey) }  // reserved; no VLEK installed
        let gfs = GuestFieldSelect(rawValue: req.guest_field_select)
        if !gfs.subtracting(.defined).isEmpty { return .failure(.invalidParam) }
        if req.vmpl < state.currentVMPL || req.vmpl > 3 { return .failure(.invalidParam) }
        if gfs.contains(.guestSVN) && req.guest_svn > state.idBlockSVN { return .failure(.invalidParam) }
        let tcb = TCBVersion(raw: req.tcb_version)
        if gfs.contains(.tcbVersion) && (tcb.reservedBytes != 0 || !tcb.isAtMost(TCBVersion(raw: state.committedTCB))) {
            return .failure(.invalidParam)
        }
        if rootSelect == 0 && state.maskChipKey { return .failure(.invalidKey) }

        let root: [UInt8]
        if rootSelect == 1 {
            root = state.vmrk
        } else {
            root = vcekHash(tcb: gfs.contains(.tcbVersion) ? req.tcb_version : state.reportedTCB)
        }
        var mix = [UInt8](repeating: 0, count: 168)
        func put(_ v: UInt64, _ at: Int, _ n: Int) {
            for i in 0..<n { mix[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
        }
        func put(_ b: [UInt8], _ at: Int, _ n: Int) { for i in 0..<n { mix[at + i] = b[i] } }
        let idBlockKeySelect: UInt64 = state.idKeyDigest.contains(where: { $0 != 0 }) ? 1 : 0
        put(UInt64(rootSelect) | idBlockKeySelect << 1, 0x00, 4)
        put(gfs.rawValue, 0x08, 8)
        put(UInt64(req.vmpl), 0x10, 4)
        if gfs.contains(.guestSVN) { put(UInt64(req.guest_svn), 0x14, 4) }
        if gfs.contains(.tcbVersion) { put(req.tcb_version, 0x18, 8) }
        if gfs.contains(.guestPolicy) { put(state.policy, 0x20, 8) }
        if gfs.contains(.imageID) { put(state.imageID, 0x28, 16) }
        if gfs.contains(.familyID) { put(state.familyID, 0x38, 16) }
        if gfs.contains(.measurement) { put(state.measurement, 0x48, 32) }
        put(state.hostData, 0x68, 32)
        put(state.idKeyDigest, 0x88, 32)
        // SP800-108 counter mode, one block: HMAC(root, 1 ‖ "gmsg-keyreq" ‖ 0 ‖ mix ‖ 256), LE integers.
        let input = [1, 0, 0, 0] + Array("gmsg-keyreq".utf8) + [0] + mix + [0, 1, 0, 0]
        var rootCopy = root
        let rootKey = SecureBytes(consuming: &rootCopy)
        guard var out = try? KDF.hmacSHA256(key: rootKey, data: input) else { return .failure(.invalidParam) }
        return .success(SecureBytes(consuming: &out))
    }

    /// The VCEK hash for a TCB: deterministic per chip and TCB.
    func vcekHash(tcb: UInt64) -> [UInt8] {
        var seed = state.chipSeed
        let key = SecureBytes(consuming: &seed)
        return
            (try? KDF.hmacSHA256(
                key: key, data: Array("vcek-hash".utf8) + withUnsafeBytes(of: tcb.littleEndian) { Array($0) })) ?? []
    }

    /// A 1184-byte report in the documented layout, signed over bytes 0x000–0x29F with the
    /// simulated VCEK (ECDSA P-384, SHA-384; R and S as 72-byte little-endian integers at 0x2A0).
    /// With MASK_CHIP_KEY the firmware does not sign: SIGNING_KEY = 7 and a zero signature.
    func makeReport(reportData: [UInt8], vmpl: UInt32) -> [UInt8] {
        var r = [UInt8](repeating: 0, count: SNPReport.size)
        func put(_ v: UInt64, _ at: Int, _ n: Int) {
            for i in 0..<n { r[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
        }
        func put(_ b: [UInt8], _ at: Int) { for (i, x) in b.enumerated() { r[at + i] = x } }
        put(3, 0x00, 4)  // version
        put(UInt64(state.idBlockSVN), 0x04, 4)
        put(state.policy, 0x08, 8)
        put(state.familyID, 0x10)
        put(state.imageID, 0x20)
        put(UInt64(vmpl), 0x30, 4)
        put(1, 0x34, 4)  // signature algorithm: ECDSA P-384 with SHA-384
        put(state.reportedTCB, 0x38, 8)
        put(state.maskChipKey ? 7 << 2 | 2 : 0, 0x48, 4)  // SIGNING_KEY: 0 = VCEK, 7 = none (bit 1 MASK_CHIP_KEY)
        put(reportData, 0x50)
        put(state.measurement, 0x90)
        put(state.hostData, 0xC0)
        put(state.idKeyDigest, 0xE0)
        put(state.reportedTCB, 0x180, 8)
        put(state.committedTCB, 0x1E0, 8)
        put(state.reportedTCB, 0x1F0, 8)
        if !state.maskChipKey, let key = try? state.vcek(), let sig = try? key.sign(Array(r[0..<0x2A0])) {
            put(Array(sig.r.reversed()), 0x2A0)
            put(Array(sig.s.reversed()), 0x2A0 + 72)
        }
        return r
    }
}
