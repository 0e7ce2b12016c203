package mssqlsim

import "time"

// zeroTime asks for the content hash now.
var zeroTime time.Time
