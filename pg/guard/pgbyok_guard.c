/*
 * pgbyok_guard: closes what PostgreSQL 15's CREATEROLE leaves open to a server's administrator.
 *
 * In PostgreSQL 15 a role with CREATEROLE may grant membership in any role that is not a superuser,
 * including pg_execute_server_program, pg_read_server_files and pg_write_server_files, which run programs
 * and read or write files as the server's OS user. Azure Flexible Server blocks this with its own hooks;
 * this module does the same for pgbyok: a non-superuser cannot grant (or join through CREATE ROLE ... IN
 * ROLE / ALTER GROUP ... ADD USER) a role that holds those privileges, and cannot create, alter, rename
 * or drop pgbyok's own roles (pgbyok, pgbyok_*), and CREATE EXTENSION is refused for an extension that is
 * not on the allow-list (extwlist.extensions; pgextwlist creates the listed ones as the superuser). Loaded through shared_preload_libraries, which pgbyok
 * sets on the postgres command line at every start.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void _PG_init(void);

static ProcessUtility_hook_type prev_hook = NULL;

static bool
is_pgbyok_name(const char *name)
{
	return name != NULL && strncmp(name, "pgbyok", 6) == 0;
}

/* Whether granting membership in `name` would hand out server files or programs, or a pgbyok role. */
static bool
is_reserved_grant(const char *name)
{
	Oid			roleid;

	if (is_pgbyok_name(name))
		return true;
	roleid = get_role_oid(name, true);
	/* PostgreSQL itself keeps superuser roles to superusers. */
	if (!OidIsValid(roleid) || superuser_arg(roleid))
		return false;
	return has_privs_of_role(roleid, ROLE_PG_EXECUTE_SERVER_PROGRAM) ||
		has_privs_of_role(roleid, ROLE_PG_READ_SERVER_FILES) ||
		has_privs_of_role(roleid, ROLE_PG_WRITE_SERVER_FILES);
}

static void
refuse_grant(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to grant role \"%s\"", name),
			 errdetail("On a pgbyok server the roles that run programs or read and write files as the server's OS user, and pgbyok's own roles, are reserved to pgbyok.")));
}

static void
refuse_role(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for role \"%s\"", name),
			 errdetail("Roles whose names start with \"pgbyok\" belong to pgbyok.")));
}

/* Whether `name` is on the comma-separated allow-list of pgextwlist. */
static bool
extension_allowed(const char *name)
{
	const char *list = GetConfigOption("extwlist.extensions", true, false);
	size_t		len = strlen(name);
	const char *p = list;

	while (p != NULL && *p != '\0')
	{
		const char *end;

		while (*p == ' ' || *p == ',')
			p++;
		end = p;
		while (*end != '\0' && *end != ',' && *end != ' ')
			end++;
		if ((size_t) (end - p) == len && strncmp(p, name, len) == 0)
			return true;
		p = end;
	}
	return false;
}

static const char *
spec_name(RoleSpec *spec)
{
	return spec != NULL && spec->roletype == ROLESPEC_CSTRING ? spec->rolename : NULL;
}

static void
check_role_list(List *roles, bool as_grant)
{
	ListCell   *lc;

	foreach(lc, roles)
	{
		const char *name = spec_name((RoleSpec *) lfirst(lc));

		if (name == NULL)
			continue;
		if (as_grant && is_reserved_grant(name))
			refuse_grant(name);
		if (!as_grant && is_pgbyok_name(name))
			refuse_role(name);
	}
}

static void
check_statement(Node *stmt)
{
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_GrantRoleStmt:
			{
				GrantRoleStmt *g = (GrantRoleStmt *) stmt;

				if (!g->is_grant)
					break;
				foreach(lc, g->granted_roles)
				{
					AccessPriv *priv = (AccessPriv *) lfirst(lc);

					if (is_reserved_grant(priv->priv_name))
						refuse_grant(priv->priv_name);
				}
				break;
			}
		case T_CreateRoleStmt:
			{
				CreateRoleStmt *c = (CreateRoleStmt *) stmt;

				if (is_pgbyok_name(c->role))
					refuse_role(c->role);
				foreach(lc, c->options)
				{
					DefElem    *opt = (DefElem *) lfirst(lc);

					if (strcmp(opt->defname, "addroleto") == 0)
						check_role_list((List *) opt->arg, true);
				}
				break;
			}
		case T_AlterRoleStmt:
			{
				AlterRoleStmt *a = (AlterRoleStmt *) stmt;
				const char *name = spec_name(a->role);

				if (is_pgbyok_name(name))
					refuse_role(name);
				/* ALTER GROUP name ADD USER ...: a grant of `name`. */
				foreach(lc, a->options)
				{
					DefElem    *opt = (DefElem *) lfirst(lc);

					if (a->action > 0 && strcmp(opt->defname, "rolemembers") == 0 && name != NULL && is_reserved_grant(name))
						refuse_grant(name);
				}
				break;
			}
		case T_AlterRoleSetStmt:
			{
				const char *name = spec_name(((AlterRoleSetStmt *) stmt)->role);

				if (is_pgbyok_name(name))
					refuse_role(name);
				break;
			}
		case T_DropRoleStmt:
			check_role_list(((DropRoleStmt *) stmt)->roles, false);
			break;
		case T_RenameStmt:
			{
				RenameStmt *r = (RenameStmt *) stmt;

				if (r->renameType == OBJECT_ROLE && (is_pgbyok_name(r->subname) || is_pgbyok_name(r->newname)))
					refuse_role(is_pgbyok_name(r->subname) ? r->subname : r->newname);
				break;
			}
		case T_CreateExtensionStmt:
			{
				const char *name = ((CreateExtensionStmt *) stmt)->extname;

				if (!extension_allowed(name))
					ereport(ERROR,
							(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
							 errmsg("extension \"%s\" is not allow-listed on this server", name),
							 errdetail("The administrator may create the extensions of the azure.extensions server parameter."),
							 errhint("Ask for it with: pgbyok server parameter set --server-name <server> --name azure.extensions --value <list including %s>", name)));
				break;
			}
		default:
			break;
	}
}

static void
pgbyok_guard_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					 ProcessUtilityContext context, ParamListInfo params,
					 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (!superuser())
		check_statement(pstmt->utilityStmt);
	if (prev_hook)
		prev_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR, (errmsg("pgbyok_guard must be loaded through shared_preload_libraries")));
	prev_hook = ProcessUtility_hook;
	ProcessUtility_hook = pgbyok_guard_utility;
}
