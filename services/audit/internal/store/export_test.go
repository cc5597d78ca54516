package store

import auditv1 "github.com/parleyhq/parley/gen/pb/parley/audit/v1"

// ListSQL returns the query List runs for req, for tests that explain it.
func ListSQL(tenant string, req *auditv1.ListConversationsRequest) (string, []any, error) {
	q, _, err := listQuery(tenant, req)
	if err != nil {
		return "", nil, err
	}
	return q.sql(), q.args, nil
}
