package mssqlsim

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"time"
)

// headerOnly answers RESTORE HEADERONLY: one row per backup set on the
// media.
func (x *execCtx) headerOnly(st *restoreStmt) *Error {
	devs, e := x.inst.devices(st.sources, st.credential)
	if e != nil {
		return abnormal(e, "RESTORE HEADERONLY")
	}
	_, sets, _, e := x.inst.readSets(x.ctx, devs[0])
	if e != nil {
		return abnormal(e, "RESTORE HEADERONLY")
	}
	cols := []column{nv("BackupName", 128), nv("BackupDescription", 255), {name: "BackupType", typ: ctSmallInt},
		dc("ExpirationDate"), tc("Compressed"), {name: "Position", typ: ctSmallInt}, tc("DeviceType"),
		nv("UserName", 128), nv("ServerName", 128), nv("DatabaseName", 128), ic("DatabaseVersion"),
		dc("DatabaseCreationDate"), lc("BackupSize"), lc("FirstLSN"), lc("LastLSN"), lc("CheckpointLSN"),
		lc("DatabaseBackupLSN"), d1("BackupStartDate"), d1("BackupFinishDate"), {name: "SortOrder", typ: ctSmallInt},
		{name: "CodePage", typ: ctSmallInt}, ic("UnicodeLocaleId"), ic("UnicodeComparisonStyle"), tc("CompatibilityLevel"),
		ic("SoftwareVendorId"), ic("SoftwareVersionMajor"), ic("SoftwareVersionMinor"), ic("SoftwareVersionBuild"),
		nv("MachineName", 128), ic("Flags"), gc("BindingID"), gc("RecoveryForkID"), nv("Collation", 128),
		gc("FamilyGUID"), bc("HasBulkLoggedData"), bc("IsSnapshot"), bc("IsReadOnly"), bc("IsSingleUser"),
		bc("HasBackupChecksums"), bc("IsDamaged"), bc("BeginsLogChain"), bc("HasIncompleteMetaData"),
		bc("IsForceOffline"), bc("IsCopyOnly"), gc("FirstRecoveryForkID"), lc("ForkPointLSN"),
		nv("RecoveryModel", 60), lc("DifferentialBaseLSN"), gc("DifferentialBaseGUID"),
		nv("BackupTypeDescription", 60), gc("BackupSetGUID"), lc("CompressedBackupSize"), tc("Containment"),
		nv("KeyAlgorithm", 32), nv("EncryptorThumbprint", 64), nv("EncryptorType", 32)}
	var rows [][]any
	for _, s := range sets {
		h := s.setHeader
		desc := map[int]string{typeFull: "Database", typeLog: "Transaction Log", typeDiff: "Database Differential"}[h.Type]
		devType := int64(2)
		if devs[0].url {
			devType = 9
		}
		w := h.writer()
		rows = append(rows, []any{nullIfEmpty(h.Name), nullIfEmpty(h.Description), int64(h.Type), nil,
			b2i(h.Compressed), int64(s.Position), devType, h.UserName, h.ServerName, h.DatabaseName, int64(w.dbVersion),
			nil, numeric(s.RawBytes), numeric(h.FirstLSN), numeric(h.LastLSN), lsnOrNull(h.CheckpointLSN),
			lsnOrNull(h.DatabaseBackupLSN), datetimeValue(h.localStart()), datetimeValue(s.localFinish()), int64(52), int64(0),
			int64(1033), int64(196609), int64(w.compat), int64(4608), int64(w.major), int64(0), int64(w.build), h.ServerName,
			int64(512), h.DatabaseGUID, guidOrNull(h.LastRecoveryForkGUID), h.Collation, h.FamilyGUID,
			b2i(h.HasBulkLoggedData), int64(0), int64(0), int64(0), b2i(h.Checksums), int64(0),
			b2i(h.BeginsLogChain), int64(0), int64(0), b2i(h.IsCopyOnly), guidOrNull(h.FirstRecoveryForkGUID),
			lsnOrNull(h.ForkPointLSN), string(h.RecoveryModel), lsnOrNull(h.DifferentialBaseLSN),
			guidOrNull(h.DifferentialBaseGUID), desc, guidOrNull(h.BackupSetGUID), numeric(s.StoredBytes), int64(0), nil, nil, nil})
	}
	return x.sendRows(cols, rows)
}

// fileListOnly answers RESTORE FILELISTONLY for the set at FILE.
func (x *execCtx) fileListOnly(st *restoreStmt) *Error {
	src, e := x.inst.openSource(x.ctx, st)
	if e != nil {
		return abnormal(e, "RESTORE FILELIST")
	}
	h := src.set.setHeader
	cols := []column{nv("LogicalName", 128), nv("PhysicalName", 260), nv("Type", 1), nv("FileGroupName", 128),
		lc("Size"), lc("MaxSize"), bi("FileId"), lc("CreateLSN"), lc("DropLSN"), gc("UniqueId"), lc("ReadOnlyLSN"),
		lc("ReadWriteLSN"), bi("BackupSizeInBytes"), ic("SourceBlockSize"), ic("FileGroupId"), gc("LogGroupGUID"),
		lc("DifferentialBaseLSN"), gc("DifferentialBaseGUID"), bc("IsReadOnly"), bc("IsPresent"),
		nv("TDEThumbprint", 64), nv("SnapshotUrl", 360)}
	var rows [][]any
	for _, f := range h.Files {
		typ, group, gid := "D", any("PRIMARY"), int64(1)
		size := int64(f.Pages) * PageSize
		if f.IsLog {
			typ, group, gid = "L", nil, 0
		}
		rows = append(rows, []any{f.Logical, f.Physical, typ, group, numeric(size), numeric(35184372080640),
			int64(f.ID), nil, nil, nil, nil, nil, size, int64(4096), gid, nil, lsnOrNull(h.DifferentialBaseLSN),
			guidOrNull(h.DifferentialBaseGUID), int64(0), int64(1), nil, nil})
	}
	return x.sendRows(cols, rows)
}

// labelOnly answers RESTORE LABELONLY: the media header.
func (x *execCtx) labelOnly(st *restoreStmt) *Error {
	devs, e := x.inst.devices(st.sources, st.credential)
	if e != nil {
		return abnormal(e, "RESTORE LABELONLY")
	}
	m, _, _, e := x.inst.readSets(x.ctx, devs[0])
	if e != nil {
		return abnormal(e, "RESTORE LABELONLY")
	}
	cols := []column{nv("MediaName", 128), gc("MediaSetId"), ic("FamilyCount"), ic("FamilySequenceNumber"),
		dc("MediaDate")}
	return x.sendRows(cols, [][]any{{nullIfEmpty(m.MediaName), m.MediaSetGUID, int64(m.FamilyCount), int64(m.FamilySeq), m.Created}})
}

// verifyOnly answers RESTORE VERIFYONLY: reads the whole set, checking
// block checksums and, WITH CHECKSUM, page checksums.
func (x *execCtx) verifyOnly(st *restoreStmt) *Error {
	const verb = "VERIFY DATABASE"
	src, e := x.inst.openSource(x.ctx, st)
	if e != nil {
		return abnormal(e, verb)
	}
	h := src.set.setHeader
	if st.checksum && !h.Checksums {
		return abnormal(newErr(3187, 16, "RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain checksum information."), verb)
	}
	verify := h.Checksums && !st.noChecksum
	sr, closeBody, e := x.inst.body(x.ctx, src, verify)
	if e != nil {
		return abnormal(e, verb)
	}
	defer closeBody()
	damaged := func(cause error) *Error {
		return &Error{Number: 3189, Severity: 16, State: 1, Message: "Damage to the backup set was detected.",
			Then: []*Error{newErr(3013, 16, "VERIFY DATABASE is terminating abnormally.")}}
	}
	br := bufio.NewReaderSize(sr, 256<<10)
	if h.Type == typeLog {
		for {
			if _, err := decodeRecord(br); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return damaged(err)
			}
		}
	} else {
		page := make([]byte, PageSize)
		for {
			if _, err := io.ReadFull(br, page); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return damaged(err)
			}
			if _, ok := readPageHeader(page); !ok {
				return damaged(errMalformed)
			}
			if verify && !pageChecksumOK(page) {
				return damaged(errMalformed)
			}
		}
	}
	x.info(3262, "The backup set on file %d is valid.", src.set.Position)
	return nil
}

// parseExec: EXEC proc [@name =] value, ... for the sim.* procedures.
func (p *parser) parseExec() (stmt, *Error) {
	parts, e := p.objectName()
	if e != nil {
		return nil, e
	}
	proc := strings.ToLower(strings.Join(parts, "."))
	args := map[string]any{}
	var positional []any
	for !p.endOfStatement() && !startsStatement(p.peek()) {
		name := ""
		if p.peek().kind == tVar && p.peekAt(1).isPunct("=") {
			name = strings.ToLower(p.next().text)
			p.next()
		}
		x, e := p.parsePrimary()
		if e != nil {
			return nil, e
		}
		lit, ok := x.(litExpr)
		if !ok {
			return nil, p.syntaxErr()
		}
		if name == "" {
			positional = append(positional, lit.v)
		} else {
			args[name] = lit.v
		}
		if !p.acceptPunct(",") {
			break
		}
	}
	if len(args) == 0 && len(positional) == 0 {
		// an RPC call: the parameters came with the request
		for k, v := range p.params {
			if k != unicodeParamsKey {
				args[k] = normalizeParam(v)
			}
		}
	}
	order := map[string][]string{
		"sim.content_hash": {"@database", "@as_of"},
		"sim.workload":     {"@database", "@tps", "@pages_per_tx", "@mark_every", "@bulk_every"},
		"sim.mark":         {"@database", "@mark"},
		"sim.bulk_load":    {"@database", "@pages"},
		"sim.commit":       {"@database", "@transactions", "@pages_per_tx"},
	}
	names, ok := order[proc]
	if !ok {
		return nil, newErr(2812, 16, "Could not find stored procedure '%s'.", strings.Join(parts, "."))
	}
	for k, v := range positional {
		if k >= len(names) {
			return nil, newErr(8144, 16, "Procedure or function %s has too many arguments specified.", proc)
		}
		args[names[k]] = v
	}
	for k := range args {
		found := false
		for _, n := range names {
			if n == k {
				found = true
			}
		}
		if !found {
			return nil, newErr(8145, 16, "%s is not a parameter for procedure %s.", k, proc)
		}
	}
	str := func(k string) string { s, _ := toStr(args[k]); return s }
	num := func(k string, def float64) float64 {
		switch v := args[k].(type) {
		case int64:
			return float64(v)
		case float64:
			return v
		case string:
			n, ok := toInt(v)
			if ok {
				return float64(n)
			}
		}
		return def
	}
	need := func(x *execCtx) (string, *Error) {
		db := str("@database")
		if db == "" {
			return "", newErr(201, 16, "Procedure or function '%s' expects parameter '@database', which was not supplied.", proc)
		}
		if e := x.needSysadmin("EXECUTE", "master"); e != nil {
			return "", e
		}
		return db, nil
	}
	return func(x *execCtx) *Error {
		db, e := need(x)
		if e != nil {
			return e
		}
		switch proc {
		case "sim.content_hash":
			var asOf time.Time
			if v, ok := args["@as_of"]; ok && v != nil {
				switch t := v.(type) {
				case time.Time:
					asOf = t.UTC()
				default:
					s, _ := toStr(v)
					tm, err := parseDateTime(s)
					if err != nil {
						return newErr(241, 16, "Conversion failed when converting date and/or time from character string.")
					}
					asOf = tm
				}
			}
			h, err := x.inst.ContentHash(db, asOf)
			if err != nil {
				return asError(err)
			}
			return x.sendRows([]column{nv("content_hash", 64)}, [][]any{{h}})
		case "sim.workload":
			err := x.inst.StartWorkload(db, WorkloadOptions{TPS: num("@tps", 0), PagesPerTx: int(num("@pages_per_tx", 0)),
				MarkEvery: int(num("@mark_every", 0)), BulkEvery: int(num("@bulk_every", 0))})
			if err != nil {
				return asError(err)
			}
		case "sim.mark":
			if _, err := x.inst.Mark(db, str("@mark")); err != nil {
				return asError(err)
			}
		case "sim.bulk_load":
			if _, err := x.inst.BulkLoad(db, int(num("@pages", 64))); err != nil {
				return asError(err)
			}
		case "sim.commit":
			n := int(num("@transactions", 1))
			for k := 0; k < n; k++ {
				if _, err := x.inst.Commit(db, int(num("@pages_per_tx", 4))); err != nil {
					return asError(err)
				}
			}
		}
		return x.doneNoCount()
	}, nil
}
