from __future__ import annotations

from rest_framework.routers import SimpleRouter

from tenants.api import audit_views, keys_views, member_views

app_name = "tenants-api"

router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register("api-keys", keys_views.APIKeyViewSet, basename="api-key")
router.register("members", member_views.MemberViewSet, basename="member")
router.register("invitations", member_views.InvitationViewSet, basename="invitation")
router.register("audit-log", audit_views.AuditLogViewSet, basename="audit-log")

urlpatterns = router.urls
