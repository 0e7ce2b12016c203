package mssqlsim

import "strings"

// languages are the session languages the simulator knows, by the names
// and aliases SET LANGUAGE accepts (sys.syslanguages name and alias).
var languages = map[string]string{
	"us_english": "us_english", "english": "us_english",
	"deutsch": "Deutsch", "german": "Deutsch",
}

// languageName returns the official name of a language name or alias.
func languageName(s string) (string, bool) {
	n, ok := languages[strings.ToLower(s)]
	return n, ok
}

// translations are the texts of the informational messages a client reads
// while a statement runs, in the languages other than us_english. SQL
// Server sends every message in the session's language: a client that
// matches English text instead of the message number breaks on a server
// set up in another language.
var translations = map[string]map[int32]string{
	"Deutsch": {
		3211: "%d Prozent verarbeitet.",
		3014: "%s hat %d Seiten in %.3f Sekunden erfolgreich verarbeitet (%.3f MB/s).",
	},
}

// localize returns the format of message number in language, or format
// itself when the simulator has no translation.
func localize(language string, number int32, format string) string {
	if t, ok := translations[language][number]; ok {
		return t
	}
	return format
}
