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
    /// Simulated platform and launch state. Fields added after the first release decode with
    /// their defaults, so older state files still load.
    public struct State: Codable, Equatable, Sendable {
        public var chipSeed: [UInt8]
        public var vmrk: [UInt8]
        /// The TCB the platform committed to (key requests may not ask above it).
        public var committedTCB: UInt64
        /// The TCB the host reports (VCEK-rooted keys without a TCB in the request use it).
        public var reportedTCB: UInt64
        /// The TCB of the firmware running now (at or above the committed one).
        public var currentTCB: UInt64 = 0x1500_0000_0000_0304
        /// The current TCB when this VM was launched (set by `relaunch`).
        public var launchTCB: UInt64 = 0x1500_0000_0000_0304
        public var currentVMPL: UInt32 = 0
        public var policy: UInt64 = 0x30000
        public var imageID: [UInt8] = Array(repeating: 0, count: 16)
        public var familyID: [UInt8] = Array(repeating: 0, count: 16)
        public var measurement: [UInt8]
        public var hostData: [UInt8] = Array(repeating: 0, count: 32)
        public var idKeyDigest: [UInt8] = Array(repeating: 0, count: 48)
        public var idBlockSVN: UInt32 = 0
        public var maxMessageVersion: UInt8 = 1
        /// The host masked the chip key: no VCEK-rooted keys, unsigned reports (unless a VLEK).
        public var maskChipKey = false
        /// The host masked CHIP_ID: reports carry zeros there.
        public var maskChipID = false
        /// The VCEK is disabled for this guest (KEY_SEL 1 then fails with INVALID_KEY).
        public var vcekDisabled = false
        /// The seed of a VLEK the host installed, if any (KEY_SEL 0 then picks it).
        public var vlekSeed: [UInt8]? = nil
        /// The simulated VLEK's P-384 private key (DER), which signs reports when selected.
        public var vlekKeyDER: [UInt8] = []
        public var vmpckDisabled = false
        /// The 64-byte CHIP_ID (Turin uses the first 8 bytes only).
        public var chipID: [UInt8] = []
        /// Report VERSION to emit: 2 (no CPUID fields), 3, 4 or 5 (with mitigation vectors).
        public var reportVersion: UInt32 = 3
        /// CPUID family, model and stepping in v3+ reports; family 0x1A is Turin (its TCB layout).
        public var cpuFamily: UInt8 = 0x19
        public var cpuModel: UInt8 = 0x11
        public var cpuStepping: UInt8 = 1
        /// Guest messages sent so far (two sequence numbers per exchange, as the kernel counts).
        public var sequence: UInt64 = 0
        /// The host answers BUSY to every request (the kernel gives up after a minute of
        /// retries, with ETIMEDOUT, and wipes the VMPCK).
        public var hostBusy = false
        /// The simulated VCEK's P-384 private key (DER), which signs reports.
        public var vcekKeyDER: [UInt8] = []
        /// What the host hands out with extended reports: (GUID, DER) pairs.
        public var hostCertificates: [HostCertificate] = []

        /// One certificate of the host's table.
        public struct HostCertificate: Codable, Equatable, Sendable {
            public var guid: String
            public var der: [UInt8]
            public init(guid: String, der: [UInt8]) {
                self.guid = guid
                self.der = der
            }
        }

        public init(chipSeed: [UInt8], vmrk: [UInt8], committedTCB: UInt64, reportedTCB: UInt64, measurement: [UInt8]) {
            self.chipSeed = chipSeed
            self.vmrk = vmrk
            self.committedTCB = committedTCB
            self.reportedTCB = reportedTCB
            self.currentTCB = committedTCB
            self.launchTCB = committedTCB
            self.measurement = measurement
        }

        enum CodingKeys: String, CodingKey {
            case chipSeed, vmrk, committedTCB, reportedTCB, currentTCB, launchTCB, currentVMPL, policy, imageID,
                familyID
            case measurement, hostData, idKeyDigest, idBlockSVN, maxMessageVersion, maskChipKey, maskChipID,
                vcekDisabled
            case vlekSeed, vlekKeyDER, vmpckDisabled, chipID, reportVersion, cpuFamily, cpuModel, cpuStepping, sequence
            case hostBusy, vcekKeyDER, hostCertificates
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(
                chipSeed: try c.decode([UInt8].self, forKey: .chipSeed),
                vmrk: try c.decode([UInt8].self, forKey: .vmrk),
                committedTCB: try c.decode(UInt64.self, forKey: .committedTCB),
                reportedTCB: try c.decode(UInt64.self, forKey: .reportedTCB),
                measurement: try c.decode([UInt8].self, forKey: .measurement))
            func opt<T: Decodable>(_ k: CodingKeys, _ into: inout T) throws {
                if let v = try c.decodeIfPresent(T.self, forKey: k) { into = v }
            }
            try opt(.currentTCB, &currentTCB)
            try opt(.launchTCB, &launchTCB)
            try opt(.currentVMPL, &currentVMPL)
            try opt(.policy, &policy)
            try opt(.imageID, &imageID)
            try opt(.familyID, &familyID)
            try opt(.hostData, &hostData)
            try opt(.idKeyDigest, &idKeyDigest)
            try opt(.idBlockSVN, &idBlockSVN)
            try opt(.maxMessageVersion, &maxMessageVersion)
            try opt(.maskChipKey, &maskChipKey)
            try opt(.maskChipID, &maskChipID)
            try opt(.vcekDisabled, &vcekDisabled)
            vlekSeed = try c.decodeIfPresent([UInt8].self, forKey: .vlekSeed)
            try opt(.vlekKeyDER, &vlekKeyDER)
            try opt(.vmpckDisabled, &vmpckDisabled)
            try opt(.chipID, &chipID)
            try opt(.reportVersion, &reportVersion)
            try opt(.cpuFamily, &cpuFamily)
            try opt(.cpuModel, &cpuModel)
            try opt(.cpuStepping, &cpuStepping)
            try opt(.sequence, &sequence)
            try opt(.hostBusy, &hostBusy)
            try opt(.vcekKeyDER, &vcekKeyDER)
            try opt(.hostCertificates, &hostCertificates)
            if chipID.isEmpty { chipID = Self.chipID(fromSeed: chipSeed) }
        }

        /// A CHIP_ID that follows from the chip's secret seed (state files from before it was stored).
        static func chipID(fromSeed seed: [UInt8]) -> [UInt8] {
            let a = KDF.sha256(Array("chip-id".utf8) + seed), b = KDF.sha256(a)
            return a + b
        }

        /// A fresh platform and launch with random secrets and measurement.
        public static func fresh() throws -> State {
            var s = State(
                chipSeed: try Random.bytes(32), vmrk: try Random.bytes(32),
                committedTCB: 0x1500_0000_0000_0304, reportedTCB: 0x1500_0000_0000_0304,
                measurement: try Random.bytes(48))
            s.chipID = Self.chipID(fromSeed: s.chipSeed)
            s.vcekKeyDER = try ECDSAP384.generate().privateKeyDER
            return s
        }

        /// Installs a VLEK (as a cloud provider's host does).
        public mutating func installVLEK() throws {
            vlekSeed = try Random.bytes(32)
            vlekKeyDER = try ECDSAP384.generate().privateKeyDER
        }

        /// The same VM on another host: another chip, whose VCEK and CHIP_ID differ.
        public mutating func moveToAnotherChip() throws {
            chipSeed = try Random.bytes(32)
            chipID = Self.chipID(fromSeed: chipSeed)
            vcekKeyDER = try ECDSAP384.generate().privateKeyDER
        }

        /// A simulated AMD: a fresh ARK (self-signed) and ASK, both RSA-4096 signing with
        /// RSASSA-PSS/SHA-384 as AMD's do, and a VCEK certificate for this chip's VCEK at the
        /// reported TCB, with KDS's SPL and hardware-ID extensions; they become the host's
        /// certificate table (VCEK, ASK, ARK). Returns the ARK, which a verifier of this
        /// simulator's reports must be told to trust. Call again after changing the TCB or chip.
        @discardableResult
        public mutating func installCertificateChain(product: String = "Genoa") throws -> [UInt8] {
            let arkKey = try AsymmetricKey.generate(.rsa(bits: 4096))
            let askKey = try AsymmetricKey.generate(.rsa(bits: 4096))
            // The root says what it is wherever it appears: never AMD's, trusted only when given.
            let rootName = "ARK-\(product) ELASTIC SIMULATOR (not AMD)"
            let ark = try X509Certificate.issue(
                subject: rootName, publicKey: arkKey, issuer: rootName, signer: arkKey, certificateAuthority: true)
            let ask = try X509Certificate.issue(
                subject: "SEV-\(product)", publicKey: askKey, issuer: rootName, signer: arkKey, serial: 2,
                certificateAuthority: true)
            let layout: TCBVersion.Layout = cpuFamily >= 0x1A ? .turin : .milanGenoa
            let vcekCert = try X509Certificate.issue(
                subject: "SEV-VCEK", publicKey: try vcek().publicKey, issuer: "SEV-\(product)", signer: askKey,
                serial: 3,
                certificateAuthority: false,
                extensions: SNPEvidenceVerifier.endorsementExtensions(
                    tcb: TCBVersion(raw: reportedTCB, layout: layout),
                    chipID: layout == .turin ? Array(chipID.prefix(8)) : chipID))
            let guids = SNPCertificateTable.names.reduce(into: [String: String]()) { $0[$1.value] = $1.key }
            hostCertificates = [
                HostCertificate(guid: guids["vcek"]!, der: vcekCert.der),
                HostCertificate(guid: guids["ask"]!, der: ask.der),
                HostCertificate(guid: guids["ark"]!, der: ark.der),
            ]
            return ark.der
        }

        /// The simulated VCEK (signs reports; its public half is what a verifier would fetch).
        public func vcek() throws -> ECDSAP384 { try ECDSAP384(privateKeyDER: vcekKeyDER) }
        public func vlek() throws -> ECDSAP384 { try ECDSAP384(privateKeyDER: vlekKeyDER) }

        /// The TCB layout of the simulated chip.
        var tcbLayout: TCBVersion.Layout { cpuFamily >= 0x1A ? .turin : .milanGenoa }
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
            $0.launchTCB = $0.currentTCB
            $0.sequence = 0
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
        // The kernel refuses to send once the sequence number would wrap (no wipe, but no
        // request works any more).
        if state.sequence >= UInt64(UInt32.max) - 1 {
            io.exitinfo2 = 0xff
            return EIO
        }
        if state.hostBusy {
            // The driver retried for a minute, then gave up and wiped the VMPCK.
            io.exitinfo2 = UInt64(2) << 32  // SNP_GUEST_VMM_ERR_BUSY
            state.vmpckDisabled = true
            try? save()
            return ETIMEDOUT
        }
        if io.msg_version > state.maxMessageVersion {
            // A message-level failure: the kernel wipes the VMPCK.
            io.exitinfo2 = UInt64(SNPFirmwareStatus.invalidParam.rawValue)
            state.vmpckDisabled = true
            try? save()
            return EIO
        }
        state.sequence += 2
        try? save()
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
        // A report request is the first 96 bytes of an extended one too.
        var req = snp_report_req()
        withUnsafeMutableBytes(of: &req) { $0.copyMemory(from: UnsafeRawBufferPointer(start: reqPtr, count: $0.count)) }
        if cmd == SNPIoctl.getExtReport {
            let ext = reqPtr.loadUnaligned(as: snp_ext_report_req.self)
            if ext.certs_address != 0 && ext.certs_len != 0 {
                // The kernel's checks, then the host's: a buffer too small is EIO with
                // hypervisor error 1 and the size needed written back; the device stays usable.
                guard ext.certs_len % 4096 == 0, ext.certs_len <= 16384 else {
                    io.exitinfo2 = 0xff
                    return EINVAL
                }
                let table = hostCertificates()
                let needed = (table.count + 4095) / 4096 * 4096
                if needed > Int(ext.certs_len) {
                    let lenOffset = MemoryLayout<snp_ext_report_req>.offset(of: \.certs_len)!
                    UnsafeMutableRawPointer(mutating: reqPtr).storeBytes(
                        of: UInt32(needed), toByteOffset: lenOffset, as: UInt32.self)
                    io.exitinfo2 = UInt64(1) << 32  // SNP_GUEST_VMM_ERR_INVALID_LEN
                    return EIO
                }
                let certs = UnsafeMutableRawBufferPointer(
                    start: UnsafeMutableRawPointer(bitPattern: UInt(ext.certs_address)), count: Int(ext.certs_len))
                certs.initializeMemory(as: UInt8.self, repeating: 0)
                certs.copyBytes(from: table)
            }
        }
        let resp = UnsafeMutableRawBufferPointer(start: respPtr, count: 4000)
        resp.initializeMemory(as: UInt8.self, repeating: 0)
        switch makeReport(req) {
        case .success(let report):
            resp.storeBytes(of: UInt32(SNPReport.size).littleEndian, toByteOffset: 4, as: UInt32.self)
            UnsafeMutableRawBufferPointer(rebasing: resp[0x20..<(0x20 + SNPReport.size)]).copyBytes(from: report)
        case .failure(let status):
            resp.storeBytes(of: status.rawValue.littleEndian, toByteOffset: 0, as: UInt32.self)
        }
        return 0
    }

    /// The host's certificate table (all zero when it has none).
    func hostCertificates() -> [UInt8] {
        guard !state.hostCertificates.isEmpty else { return [] }
        return SNPCertificateTable(
            entries: state.hostCertificates.map { SNPCertificateTable.Entry(guid: $0.guid, der: $0.der) }
        ).encoded
    }

    /// Which root secret KEY_SEL resolves to, or the STATUS the firmware answers.
    enum Root { case vcek, vlek }
    func resolve(keySel: UInt32) -> Result<Root, SNPFirmwareStatus> {
        switch keySel {
        case 0: return .success(state.vlekSeed != nil ? .vlek : .vcek)
        case 1: return state.vcekDisabled ? .failure(.invalidKey) : .success(.vcek)
        case 2: return state.vlekSeed != nil ? .success(.vlek) : .failure(.invalidKey)
        default: return .failure(.invalidKey)
        }
    }

    /// MSG_KEY_REQ per docs/platform.md §2, with the checks in the firmware's order: a masked
    /// chip key first, then reserved bits, the key selection (only for the non-VMRK root), the
    /// field select, VMPL (no upper bound: the firmware has none), guest SVN and TCB; then the KDF.
    func deriveKey(_ req: snp_derived_key_req) -> Result<SecureBytes, SNPFirmwareStatus> {
        let rootSelect = req.root_key_select & 1
        let keySel = (req.root_key_select >> 1) & 3
        var chip: Root? = nil
        if rootSelect == 0 {
            switch resolve(keySel: keySel) {
            case .success(let r): chip = r
            case .failure(let status):
                if state.maskChipKey { return .failure(.invalidKey) }
                if req.root_key_select >> 3 != 0 || req.rsvd != 0 { return .failure(.invalidParam) }
                return .failure(status)
            }
            if chip == .vcek && state.maskChipKey { return .failure(.invalidKey) }
        }
        if req.root_key_select >> 3 != 0 || req.rsvd != 0 { return .failure(.invalidParam) }
        let gfs = GuestFieldSelect(rawValue: req.guest_field_select)
        if !gfs.subtracting(.defined).isEmpty { return .failure(.invalidParam) }
        if req.vmpl < state.currentVMPL { return .failure(.invalidParam) }
        if gfs.contains(.guestSVN) && req.guest_svn > state.idBlockSVN { return .failure(.invalidParam) }
        let tcb = TCBVersion(raw: req.tcb_version, layout: state.tcbLayout)
        if gfs.contains(.tcbVersion)
            && (tcb.reservedBytes != 0 || !tcb.isAtMost(TCBVersion(raw: state.committedTCB, layout: state.tcbLayout)))
        {
            return .failure(.invalidParam)
        }

        let root: [UInt8]
        switch chip {
        case nil: root = state.vmrk
        case .vlek?: root = state.vlekSeed ?? []
        case .vcek?: root = vcekHash(tcb: gfs.contains(.tcbVersion) ? req.tcb_version : state.reportedTCB)
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

    /// MSG_REPORT_REQ: checks (VMPL at or above the guest's, KEY_SEL in the first dword of the
    /// reserved area, the rest zero), then a 1184-byte report in the documented layout of
    /// `state.reportVersion`, signed over bytes 0x000–0x29F with the key KEY_SEL picks (ECDSA
    /// P-384, SHA-384; R and S as 72-byte little-endian integers at 0x2A0). With the chip key
    /// masked and no VLEK the firmware does not sign: SIGNING_KEY = 7 and a zero signature.
    func makeReport(_ req: snp_report_req) -> Result<[UInt8], SNPFirmwareStatus> {
        let rsvd = withUnsafeBytes(of: req.rsvd) { Array($0) }
        let keySel = UInt32(rsvd[0] & 3)
        guard rsvd[0] & ~3 == 0, rsvd[1...].allSatisfy({ $0 == 0 }) else { return .failure(.invalidParam) }
        guard req.vmpl >= state.currentVMPL else { return .failure(.invalidParam) }
        var signer: Root?
        switch resolve(keySel: keySel) {
        case .success(let r): signer = (r == .vcek && state.maskChipKey) ? nil : r
        case .failure(let status):
            if keySel == 0 { signer = nil } else { return .failure(status) }
        }
        let reportData = withUnsafeBytes(of: req.user_data) { Array($0) }
        var r = [UInt8](repeating: 0, count: SNPReport.size)
        func put(_ v: UInt64, _ at: Int, _ n: Int) {
            for i in 0..<n { r[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
        }
        func put(_ b: [UInt8], _ at: Int) { for (i, x) in b.enumerated() { r[at + i] = x } }
        put(UInt64(state.reportVersion), 0x00, 4)
        put(UInt64(state.idBlockSVN), 0x04, 4)
        put(state.policy, 0x08, 8)
        put(state.familyID, 0x10)
        put(state.imageID, 0x20)
        put(UInt64(req.vmpl), 0x30, 4)
        put(1, 0x34, 4)  // signature algorithm: ECDSA P-384 with SHA-384
        put(state.currentTCB, 0x38, 8)
        let signingKey: UInt64 = signer == .vcek ? 0 : signer == .vlek ? 1 : 7
        put(signingKey << 2 | (state.maskChipKey ? 2 : 0), 0x48, 4)  // SIGNING_KEY, MASK_CHIP_KEY
        put(reportData, 0x50)
        put(state.measurement, 0x90)
        put(state.hostData, 0xC0)
        put(state.idKeyDigest, 0xE0)
        put([UInt8](repeating: 0xFF, count: 32), 0x160)  // REPORT_ID_MA: no migration agent
        put(state.reportedTCB, 0x180, 8)
        if state.reportVersion >= 3 {
            put([state.cpuFamily, state.cpuModel, state.cpuStepping], 0x188)
        }
        if !state.maskChipID {
            // Turin reports only the first 8 bytes of CHIP_ID.
            put(state.cpuFamily >= 0x1A ? Array(state.chipID.prefix(8)) : state.chipID, 0x1A0)
        }
        put(state.committedTCB, 0x1E0, 8)
        put(state.launchTCB, 0x1F0, 8)
        // Version 5: LAUNCH_MIT_VECTOR and CURRENT_MIT_VECTOR (0x1F8, 0x200) stay zero here.
        let key: ECDSAP384?
        switch signer {
        case .vcek?: key = try? state.vcek()
        case .vlek?: key = try? state.vlek()
        case nil: key = nil
        }
        if let key, let sig = try? key.sign(Array(r[0..<0x2A0])) {
            put(Array(sig.r.reversed()), 0x2A0)
            put(Array(sig.s.reversed()), 0x2A0 + 72)
        }
        return .success(r)
    }
}

/// configfs-tsm as the kernel's SEV provider serves it (docs/platform.md §4), over the simulated
/// firmware: `inblob` exactly 64 bytes, `privlevel` from the floor (the guest's VMPL) to 3,
/// `generation` counting writes, `outblob` the bare report (firmware STATUS 0x16/0x27 become
/// EINVAL, others ENXIO), `auxblob` the host's certificate table when it has one.
public final class SimulatedTSM: TSMReportTransport {
    let simulator: SNPSimulator
    var entries: [String: (inblob: [UInt8]?, privlevel: UInt32, generation: UInt64)] = [:]

    public init(simulator: SNPSimulator) { self.simulator = simulator }

    public func makeEntry(_ name: String) throws {
        guard entries[name] == nil else { throw TSMError.refused("mkdir \(name)", .fileExists) }
        entries[name] = (nil, 0, 0)
    }

    public func removeEntry(_ name: String) { entries[name] = nil }

    public func write(_ entry: String, _ attribute: String, _ value: [UInt8]) throws {
        guard var e = entries[entry] else { throw TSMError.refused(attribute, .noSuchFileOrDirectory) }
        switch attribute {
        case "inblob":
            guard value.count == 64 else { throw TSMError.refused(attribute, .invalidArgument) }
            e.inblob = value
        case "privlevel":
            guard let v = UInt32(String(decoding: value.filter { $0 > 0x20 }, as: UTF8.self)),
                v >= simulator.state.currentVMPL, v <= 3
            else { throw TSMError.refused(attribute, .invalidArgument) }
            e.privlevel = v
        default: throw TSMError.refused(attribute, .permissionDenied)
        }
        e.generation += 1
        entries[entry] = e
    }

    public func read(_ entry: String, _ attribute: String) throws -> [UInt8]? {
        guard let e = entries[entry] else { throw TSMError.refused(attribute, .noSuchFileOrDirectory) }
        switch attribute {
        case "provider": return Array("sev_guest\n".utf8)
        case "generation": return Array("\(e.generation)\n".utf8)
        case "privlevel_floor": return Array("\(simulator.state.currentVMPL)\n".utf8)
        case "outblob":
            guard let inblob = e.inblob else { throw TSMError.refused(attribute, .invalidArgument) }
            var req = snp_report_req()
            withUnsafeMutableBytes(of: &req.user_data) { $0.copyBytes(from: inblob) }
            req.vmpl = e.privlevel
            switch simulator.makeReport(req) {
            case .success(let report): return report
            case .failure(let status):
                throw TSMError.refused(
                    attribute,
                    status == .invalidParam || status == .invalidKey ? .invalidArgument : Errno(rawValue: ENXIO))
            }
        case "auxblob":
            let table = simulator.hostCertificates()
            return table.isEmpty ? nil : table
        default: return nil
        }
    }
}
