"""HTTP views (placeholder until the charge endpoints land)."""

from rest_framework.response import Response
from rest_framework.views import APIView


class _NotYet(APIView):
    def post(self, request, *args, **kwargs):
        return Response({"error": {"type": "api_error", "message": "Not implemented yet."}}, 501)

    get = post


ChargeView = PaymentIntentView = TransactionView = SchemaView = _NotYet
