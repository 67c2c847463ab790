package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service"
)

func createToken(t *service.Tokens) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req wire.CreateTokenRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		secret, info, err := t.Create(c.Request().Context(), principal(c), req.Name, req.Roles, req.Repositories)
		if err != nil {
			return err
		}
		tok := wireToken(info)
		tok.Secret = secret
		return c.JSON(http.StatusCreated, tok)
	}
}

func listTokens(t *service.Tokens) echo.HandlerFunc {
	return func(c echo.Context) error {
		ts, err := t.List(c.Request().Context(), principal(c))
		if err != nil {
			return err
		}
		out := wire.TokensResponse{Tokens: []wire.Token{}}
		for _, x := range ts {
			out.Tokens = append(out.Tokens, wireToken(x))
		}
		return c.JSON(http.StatusOK, out)
	}
}

func revokeToken(t *service.Tokens) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := t.Revoke(c.Request().Context(), principal(c), c.Param("id")); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	}
}

func wireToken(x service.TokenInfo) wire.Token {
	return wire.Token{ID: x.ID, Name: x.Name, Roles: x.Roles, Repositories: x.Repositories, CreatedAt: x.CreatedAt, RevokedAt: x.RevokedAt, LogIndex: x.LogIndex}
}
