package mssqlsim

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf16"

	"github.com/cofferhq/coffer/pkg/mssqlsim/tds"
)

// Version is the product version the simulator reports by default (SQL
// Server 2022); Config.MajorVersion selects another.
const Version = "16.0.4135.4"

// product is what an instance of one major version reports about itself.
type product struct {
	major     int
	version   string // SERVERPROPERTY('ProductVersion')
	build     int    // the third part of version, which TDS LOGINACK carries
	name      string // @@VERSION's first line, up to the version
	dbVersion int    // RESTORE HEADERONLY's DatabaseVersion
	compat    int    // compatibility level of a new database
}

// products are the major versions an instance can be. SQL Server 2019 is
// there because it has no S3 connector, so a test can show what coffer
// does with an instance that cannot back up to URL.
var products = map[int]product{
	16: {major: 16, version: Version, build: 4135, name: "Microsoft SQL Server 2022 (RTM-CU15) (KB5041321)", dbVersion: 957, compat: 160},
	15: {major: 15, version: "15.0.4385.2", build: 4385, name: "Microsoft SQL Server 2019 (RTM-CU28) (KB5039747)", dbVersion: 904, compat: 150},
}

// Config configures an Instance. The zero value of each field has a
// sensible default; see setDefaults.
type Config struct {
	// ServerName is @@SERVERNAME and SERVERPROPERTY('ServerName').
	ServerName string
	// Edition is SERVERPROPERTY('Edition').
	Edition string
	// CaseSensitive selects a case-sensitive server collation
	// (Latin1_General_CS_AS) instead of SQL_Latin1_General_CP1_CI_AS.
	CaseSensitive bool
	// SAPassword is the password of the sa login (sysadmin).
	SAPassword string
	// Now is the clock; default time.Now. Tests inject a fake one.
	Now func() time.Time
	// Location is the server's time zone; default UTC. As on SQL Server,
	// SYSDATETIME, msdb, HEADERONLY and STOPAT are in its local time;
	// the instance keeps its clock and log in UTC and converts at the
	// edges (see localtime.go).
	Location *time.Location
	// DataPath and LogPath are the default file locations
	// (SERVERPROPERTY('InstanceDefaultDataPath') and ...LogPath).
	DataPath, LogPath string
	// BackupDir is where a relative TO DISK path lands; default DataPath.
	BackupDir string
	// TrustedCAs are the certificate authorities BACKUP TO URL trusts, as
	// the instance's machine certificate store would; nil means the system
	// roots.
	TrustedCAs *x509.CertPool
	// Language is the server's default language (sp_configure 'default
	// language'), which a session starts with until SET LANGUAGE: it
	// chooses the text of the messages the simulator translates (3211,
	// 3014). Default us_english.
	Language string
	// NoDefaultPaths makes SERVERPROPERTY('InstanceDefaultDataPath') and
	// ('InstanceDefaultLogPath') NULL, as on an instance whose default
	// locations were never set; CREATE DATABASE still places files under
	// DataPath, as SQL Server places them beside master's.
	NoDefaultPaths bool
	// Seed makes database seeds and GUIDs reproducible; 0 picks one.
	Seed uint64
	// DefaultPages is the data size of a CREATE DATABASE without SIZE.
	DefaultPages int
	// MajorVersion is the SQL Server the instance is: 16 (SQL Server
	// 2022, the default) or 15 (SQL Server 2019, which refuses s3:// URLs
	// as it has no S3 connector). New panics on any other value.
	MajorVersion int
	// MaxURLParts is the most parts SQL Server writes to one URL before
	// the backup fails: 10,000 (the default). A test lowers it to stripe
	// a database of megabytes as SQL Server stripes one of terabytes.
	MaxURLParts int
	// BackupRate, when positive, caps each stream of a BACKUP at this many
	// bytes a second, as the disks a real server reads its data files
	// from do; zero writes as fast as the machine allows.
	BackupRate float64
	Logger     *slog.Logger
}

func (c *Config) setDefaults() {
	if c.ServerName == "" {
		c.ServerName = "SIMSQL01"
	}
	if c.Edition == "" {
		c.Edition = "Developer Edition (64-bit)"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Location == nil {
		c.Location = time.UTC
	}
	if c.DataPath == "" {
		c.DataPath = "/var/opt/mssql/data/"
	}
	if c.LogPath == "" {
		c.LogPath = c.DataPath
	}
	if c.BackupDir == "" {
		c.BackupDir = c.DataPath
	}
	if c.Language == "" {
		c.Language = "us_english"
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	if c.DefaultPages == 0 {
		c.DefaultPages = 1024 // 8 MiB, SQL Server's model database default
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MajorVersion == 0 {
		c.MajorVersion = 16
	}
	if _, ok := products[c.MajorVersion]; !ok {
		// a test or flag asked for a server the simulator cannot be
		panic(fmt.Sprintf("mssqlsim: MajorVersion %d is not modelled (15 or 16)", c.MajorVersion))
	}
}

// product returns what the instance reports about itself.
func (c *Config) product() product { return products[c.MajorVersion] }

func (c *Config) collation() string {
	if c.CaseSensitive {
		return "Latin1_General_CS_AS"
	}
	return "SQL_Latin1_General_CP1_CI_AS"
}

type login struct {
	password string
	sysadmin bool
}

type credential struct {
	id       int
	name     string
	identity string
	secret   string
}

// Instance is one simulated SQL Server instance. It is safe for concurrent
// use.
type Instance struct {
	cfg Config
	log *slog.Logger

	mu          sync.Mutex
	rnd         *lockedRand
	logins      map[string]*login
	dbs         map[int]*Database
	nextDBID    int
	credentials []*credential
	backupsets  []*backupSetRow
	foreign     []foreignRow // msdb.dbo.backupset rows other tools wrote (AddHistory)
	logMarks    []logMarkRow
	mediaSets   int
	faults      []*Fault
	workloads   map[*dbData]*workload
	ags         map[string]*AvailabilityGroup
	sessions    map[*session]func() // every connected session and how to drop it (exclusive access, AUTO_CLOSE)
	startTime   time.Time
	closed      bool
	servers     []*tds.Server
	wg          sync.WaitGroup
	batches     atomic.Int64 // batches run, for Stats
	rowsSent    atomic.Int64 // result rows sent, for Stats
	serialized  atomic.Int64 // backups refused with 3023, for Stats
	cancelled   atomic.Int64 // backups a cancelled request stopped, for Stats
	stalled     atomic.Int64 // backup streams a FaultStall holds now, for Stats
	// maxURLParts is the most parts one URL takes (maxURLParts); a test
	// lowers it to reach the limit without writing 50 GB.
	maxURLParts atomic.Int64
}

// New returns an instance holding the system databases master, tempdb,
// model and msdb.
func New(cfg Config) *Instance {
	cfg.setDefaults()
	inst := &Instance{
		cfg:       cfg,
		log:       cfg.Logger,
		rnd:       &lockedRand{r: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5eed))},
		logins:    map[string]*login{"sa": {password: cfg.SAPassword, sysadmin: true}},
		dbs:       map[int]*Database{},
		nextDBID:  5,
		workloads: map[*dbData]*workload{},
		ags:       map[string]*AvailabilityGroup{},
		sessions:  map[*session]func(){},
	}
	inst.maxURLParts.Store(maxURLParts)
	if cfg.MaxURLParts > 0 {
		inst.maxURLParts.Store(int64(cfg.MaxURLParts))
	}
	inst.startTime = cfg.Now()
	for i, name := range []string{"master", "tempdb", "model", "msdb"} {
		db := inst.newDatabase(name, 512, nil)
		db.ID = i + 1
		if name == "master" || name == "tempdb" {
			db.recovery = Simple
		}
		inst.dbs[db.ID] = db
	}
	return inst
}

// ProductVersion returns SERVERPROPERTY('ProductVersion'), such as
// 16.0.4135.4.
func (i *Instance) ProductVersion() string { return i.cfg.product().version }

// Name returns the server name.
func (i *Instance) Name() string { return i.cfg.ServerName }

// Now returns the instance's clock reading.
func (i *Instance) Now() time.Time { return i.cfg.Now() }

// AddLogin adds a SQL login, with or without sysadmin.
func (i *Instance) AddLogin(name, password string, sysadmin bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.logins[strings.ToLower(name)] = &login{password: password, sysadmin: sysadmin}
}

// SetSysadmin grants or revokes sysadmin for a login (a fault for tests:
// "revoke sysadmin").
func (i *Instance) SetSysadmin(name string, sysadmin bool) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	l, ok := i.logins[strings.ToLower(name)]
	if !ok {
		return fmt.Errorf("login %q does not exist", name)
	}
	l.sysadmin = sysadmin
	return nil
}

func (i *Instance) isSysadmin(name string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	l, ok := i.logins[strings.ToLower(name)]
	return ok && l.sysadmin
}

// sameName compares two names under the server collation, with SQL
// Server's padding semantics: trailing spaces do not count.
func (i *Instance) sameName(a, b string) bool {
	a = strings.TrimRight(a, " ")
	b = strings.TrimRight(b, " ")
	if i.cfg.CaseSensitive {
		return a == b
	}
	return strings.EqualFold(a, b)
}

// lessName orders names as the collation does (roughly).
func (i *Instance) lessName(a, b string) bool {
	if i.cfg.CaseSensitive {
		return a < b
	}
	la, lb := strings.ToLower(a), strings.ToLower(b)
	if la != lb {
		return la < lb
	}
	return a < b
}

// dbByName returns the database with that name; i.mu must be held.
func (i *Instance) dbByName(name string) *Database {
	for _, db := range i.dbs {
		if i.sameName(db.Name, name) {
			return db
		}
	}
	return nil
}

// sortedDBs returns the databases in database_id order; i.mu must be held.
func (i *Instance) sortedDBs() []*Database {
	out := make([]*Database, 0, len(i.dbs))
	for _, db := range i.dbs {
		out = append(out, db)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// checkName validates a new database name as SQL Server does.
func checkName(name string) *Error {
	n := len(utf16.Encode([]rune(name)))
	if n == 0 || strings.TrimSpace(name) == "" {
		return newErr(1038, 15, "An object or column name is missing or empty.")
	}
	if n > 128 {
		return newErr(103, 15, "The identifier that starts with '%s' is too long. Maximum length is 128.", truncRunes(name, 128))
	}
	return nil
}

// checkDerivedLogName refuses a database name too long to derive the
// log's logical and file names from. "If a logical log file name is not
// specified, SQL Server generates the logical_file_name and the
// os_file_name for the log by appending a suffix to database_name. This
// limits database_name to 123 characters" (CREATE DATABASE). SQL Server
// fails such a statement with internal error 407 (HRESULT 0x8007007A,
// ERROR_INSUFFICIENT_BUFFER), not with a message about the name.
func checkDerivedLogName(name string) *Error {
	if len(utf16.Encode([]rune(name))) > 123 {
		return newErr(407, 16, "Internal error. The string routine in file filemgr.cpp failed with HRESULT 0x8007007a.")
	}
	return nil
}

func truncRunes(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		r = r[:n]
	}
	return string(r)
}

// newDatabase builds a database with default files; i.mu must be held.
func (i *Instance) newDatabase(name string, pages int, files []File) *Database {
	now := i.cfg.Now()
	if files == nil {
		files = []File{
			{ID: 1, Logical: name, Physical: path.Join(i.cfg.DataPath, fileSafe(name)+".mdf"), Pages: pages},
			{ID: 2, Logical: name + "_log", Physical: path.Join(i.cfg.LogPath, fileSafe(name)+"_log.ldf"), IsLog: true, Pages: 1024},
		}
	}
	data := newData(i.rnd, dataPages(files), now)
	return &Database{
		owner:      i,
		Name:       name,
		State:      Online,
		CreateDate: now,
		Collation:  i.cfg.collation(),
		Files:      files,
		dbData:     data,
	}
}

// fileSafe turns a database name into a file name as SSMS would, keeping
// every character but the path separator.
func fileSafe(name string) string {
	return strings.NewReplacer("/", "_", "\\", "_", "\x00", "_").Replace(name)
}

// physicalInUse returns the database using a physical file path; i.mu must
// be held.
func (i *Instance) physicalInUse(p string, except *Database) *Database {
	for _, db := range i.dbs {
		if db == except {
			continue
		}
		for _, f := range db.Files {
			if samePath(f.Physical, p) {
				return db
			}
		}
	}
	return nil
}

// samePath compares file paths as the server's file system would: Linux
// paths (rooted at /) by case, Windows paths without.
func samePath(a, b string) bool {
	if strings.HasPrefix(a, "/") || strings.HasPrefix(b, "/") {
		return a == b
	}
	return strings.EqualFold(a, b)
}

// DatabaseOptions are the options of CreateDatabase.
type DatabaseOptions struct {
	Pages    int           // data pages; 0 means the instance default
	Recovery RecoveryModel // default FULL
}

// CreateDatabase creates a database, as CREATE DATABASE does.
func (i *Instance) CreateDatabase(name string, opt DatabaseOptions) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	_, err := i.createDatabase(name, opt.Pages, nil, opt.Recovery)
	if err != nil {
		return err
	}
	return nil
}

// createDatabase is CreateDatabase with i.mu held.
func (i *Instance) createDatabase(name string, pages int, files []File, rm RecoveryModel) (*Database, *Error) {
	if e := checkName(name); e != nil {
		return nil, e
	}
	if i.dbByName(name) != nil {
		return nil, newErr(1801, 16, "Database '%s' already exists. Choose a different database name.", name)
	}
	if pages <= 0 {
		pages = i.cfg.DefaultPages
	}
	if files == nil {
		if e := checkDerivedLogName(name); e != nil {
			return nil, e
		}
	}
	db := i.newDatabase(name, pages, files)
	for _, f := range db.Files {
		if other := i.physicalInUse(f.Physical, nil); other != nil {
			return nil, &Error{Number: 5170, Severity: 16, State: 1,
				Message: fmt.Sprintf("Cannot create file '%s' because it already exists. Change the file path or the file name, and retry the operation.", f.Physical),
				Then:    []*Error{newErr(1802, 16, "CREATE DATABASE failed. Some file names listed could not be created. Check related errors.")}}
		}
	}
	if rm != "" {
		db.recovery = rm
	}
	db.ID = i.nextDBID
	i.nextDBID++
	i.dbs[db.ID] = db
	i.log.Info("database created", "database", name, "database_id", db.ID, "pages", dataPages(db.Files))
	return db, nil
}

// DropDatabase drops a database and stops its workload.
func (i *Instance) DropDatabase(name string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if err := i.dropDatabase(name); err != nil {
		return err
	}
	return nil
}

func (i *Instance) dropDatabase(name string) *Error {
	db := i.dbByName(name)
	if db == nil {
		return newErr(3701, 11, "Cannot drop the database '%s', because it does not exist or you do not have permission.", name)
	}
	if db.ID <= 4 {
		return newErr(3708, 16, "Cannot drop the database '%s' because it is a system database.", db.Name)
	}
	if db.agName != "" {
		return newErr(3752, 16, "The database '%s' is currently joined to an availability group.  Before you can drop the database, you need to remove it from the availability group.", db.Name)
	}
	db.mu.Lock()
	busy := db.activeBackups > 0
	db.mu.Unlock()
	if busy {
		return newErr(3702, 16, "Cannot drop database \"%s\" because it is currently in use.", db.Name)
	}
	if w := i.workloads[db.dbData]; w != nil {
		w.stop()
		delete(i.workloads, db.dbData)
	}
	delete(i.dbs, db.ID)
	return nil
}

// lookup returns the database with that name or a 911 error.
func (i *Instance) lookup(name string) (*Database, *Error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	db := i.dbByName(name)
	if db == nil {
		return nil, errNoDatabase(name)
	}
	// whatever works on a database by name needs it started
	db.wake()
	return db, nil
}

// SetRecoveryModel changes a database's recovery model, as ALTER DATABASE
// ... SET RECOVERY does.
func (i *Instance) SetRecoveryModel(name string, rm RecoveryModel) error {
	db, e := i.lookup(name)
	if e != nil {
		return e
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if e := setRecovery(db, rm); e != nil {
		return e
	}
	return nil
}

func setRecovery(db *Database, rm RecoveryModel) *Error {
	if db.State != Online {
		return newErr(5011, 14, "User does not have permission to alter database '%s', the database does not exist, or the database is not in a state that allows access checks.", db.Name)
	}
	if db.agName != "" && rm != Full {
		return newErr(1468, 16, "The operation cannot be performed on database \"%s\" because it is involved in a database mirroring session or an availability group.", db.Name)
	}
	if rm == Simple && db.recovery != Simple {
		// Switching to SIMPLE truncates the log and breaks the log chain:
		// log backups need a new full or differential first.
		db.lastLogBackup = 0
		db.logChainStart = 0
	}
	db.recovery = rm
	return nil
}

// SetOffline takes a database offline or brings it online.
func (i *Instance) SetOffline(name string, offline bool) error {
	db, e := i.lookup(name)
	if e != nil {
		return e
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.State == Restoring {
		return newErr(5052, 16, "ALTER DATABASE is not permitted while a database is in the Restoring state.")
	}
	if offline {
		db.State = Offline
	} else {
		db.State = Online
	}
	return nil
}

// SetReadOnly marks a database read-only or read-write.
func (i *Instance) SetReadOnly(name string, ro bool) error {
	db, e := i.lookup(name)
	if e != nil {
		return e
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.State != Online {
		return newErr(5063, 16, "Database '%s' is in warm standby or not online. A warm-standby database is read-only.", db.Name)
	}
	db.ReadOnly = ro
	return nil
}

// ContentHash returns the hash of a database's pages now, or as of asOf
// when it is not zero: every transaction committed at or before asOf
// applied.
func (i *Instance) ContentHash(name string, asOf time.Time) (string, error) {
	db, e := i.lookup(name)
	if e != nil {
		return "", e
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.State == Restoring {
		return "", newErr(927, 14, "Database '%s' cannot be opened. It is in the middle of a restore.", db.Name)
	}
	if asOf.IsZero() {
		return db.hashNow(), nil
	}
	h, ok := db.hashAsOf(asOf)
	if !ok {
		return "", newErr(50001, 16, "sim.content_hash: no history of database '%s' before %s.", db.Name, db.originTime.UTC().Format(time.RFC3339Nano))
	}
	return h, nil
}

// Commit runs one transaction that rewrites n random pages of a database.
// It returns the commit's LSN.
func (i *Instance) Commit(name string, n int) (LSN, error) {
	return i.commitTx(name, n, "", false)
}

// Mark runs a marked transaction (BEGIN TRAN name WITH MARK) that rewrites
// a few pages.
func (i *Instance) Mark(name, mark string) (LSN, error) {
	return i.commitTx(name, 2, mark, false)
}

// BulkLoad runs a bulk operation that rewrites n pages: minimally logged
// under BULK_LOGGED, fully logged otherwise.
func (i *Instance) BulkLoad(name string, n int) (LSN, error) {
	return i.commitTx(name, n, "", true)
}

func (i *Instance) commitTx(name string, n int, mark string, bulk bool) (LSN, error) {
	db, e := i.lookup(name)
	if e != nil {
		return 0, e
	}
	i.mu.Lock()
	pages := make([]uint32, 0, n)
	db.mu.Lock()
	total := len(db.versions)
	hot := max(min(total, 64), total/32)
	for k := 0; k < n; k++ {
		// OLTP has locality: most changes land in a hot region (recent
		// rows), the rest anywhere. Differential and deduplicated backups
		// behave as they would on a real database.
		if i.rnd.IntN(5) > 0 {
			pages = append(pages, uint32(total-hot+i.rnd.IntN(hot)))
		} else {
			pages = append(pages, uint32(i.rnd.IntN(total)))
		}
	}
	i.mu.Unlock()
	defer db.mu.Unlock()
	if e := writable(db); e != nil {
		return 0, e
	}
	rec := db.commit(i.cfg.Now(), pages, mark, bulk)
	return rec.LSN, nil
}

func writable(db *Database) *Error {
	switch {
	case db.State == Restoring:
		return newErr(927, 14, "Database '%s' cannot be opened. It is in the middle of a restore.", db.Name)
	case db.State == Offline:
		return newErr(942, 14, "Database '%s' cannot be opened because it is offline.", db.Name)
	case db.ReadOnly:
		return newErr(3906, 16, "Failed to update database \"%s\" because the database is read-only.", db.Name)
	case db.agName != "" && !db.isPrimaryReplica():
		return newErr(976, 14, "The target database, '%s', is participating in an availability group and is currently not accessible for queries.", db.Name)
	}
	return nil
}

// Databases returns the names of the databases, in database_id order.
func (i *Instance) Databases() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	var out []string
	for _, db := range i.sortedDBs() {
		out = append(out, db.Name)
	}
	return out
}

// DatabaseState returns a database's state, as sys.databases shows it.
func (i *Instance) DatabaseState(name string) (State, error) {
	db, e := i.lookup(name)
	if e != nil {
		return "", e
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.State, nil
}

// lockedRand is the instance's random source; its lock is a leaf, so it can
// be used under any other lock.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (l *lockedRand) Uint64() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Uint64()
}

func (l *lockedRand) Uint32() uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Uint32()
}

func (l *lockedRand) IntN(n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.IntN(n)
}

// guid returns a new uniqueidentifier.
func (i *Instance) guid() GUID { return newGUID(i.rnd) }
