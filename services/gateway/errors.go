package gateway

import (
	"fmt"
	"net/http"
)

// Error is the body of every error answer:
//
//	{"error": {"code": "forbidden", "message": "..."}}
//
// Code is stable (scripts branch on it); Message is for people and may
// change.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody is what went wrong.
type ErrorBody struct {
	// Code is one of the ErrorCodes, named after the HTTP status.
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ErrorCodes are the codes an error answer may carry, by HTTP status.
var ErrorCodes = map[int]string{
	http.StatusBadRequest:            "bad_request",
	http.StatusUnauthorized:          "unauthenticated",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not_found",
	http.StatusConflict:              "conflict",
	http.StatusRequestEntityTooLarge: "too_large",
	http.StatusUnprocessableEntity:   "unprocessable",
	http.StatusInternalServerError:   "internal",
	http.StatusBadGateway:            "bad_gateway",
	http.StatusServiceUnavailable:    "unavailable",
	http.StatusGatewayTimeout:        "timeout",
}

// errorCode is the code of an error answer with status.
func errorCode(status int) string {
	if c, ok := ErrorCodes[status]; ok {
		return c
	}
	if status >= 500 {
		return "internal"
	}
	return "bad_request"
}

func writeError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, Error{Error: ErrorBody{Code: errorCode(status), Message: fmt.Sprintf(format, args...)}})
}
